"""The raw layout: dataset.json schema, dataset look-up by name, case listing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoseg.core.atomic import atomic_path, write_json
from autoseg.core.errors import InvalidInputError
from autoseg.core.run_layout import resolve_dataset_dir
from autoseg.core.workspace import Workspace
from autoseg.data.layout import (
    RawDataset,
    dataset_json_problems,
    split_channel_name,
)


def test_resolve_by_name_nnunet_name_and_number(tmp_path: Path) -> None:
    for folder in ("ATLAS", "Dataset012_Foo", "Dataset003_Bar"):
        (tmp_path / folder).mkdir()
    assert resolve_dataset_dir(tmp_path, "ATLAS").name == "ATLAS"
    assert resolve_dataset_dir(tmp_path, "Foo").name == "Dataset012_Foo"
    assert resolve_dataset_dir(tmp_path, "12").name == "Dataset012_Foo"
    assert resolve_dataset_dir(tmp_path, "Dataset003_Bar").name == "Dataset003_Bar"
    with pytest.raises(InvalidInputError, match="found: ATLAS, Dataset003_Bar, Dataset012_Foo"):
        resolve_dataset_dir(tmp_path, "Nope")


def test_channel_names_split_only_with_four_digit_suffix() -> None:
    assert split_channel_name("r001s001_0000.nii.gz", ".nii.gz") == ("r001s001", 0)
    assert split_channel_name("a_b_0012.nii.gz", ".nii.gz") == ("a_b", 12)
    assert split_channel_name("case.nii.gz", ".nii.gz") is None
    assert split_channel_name("case_000.nii.gz", ".nii.gz") is None
    assert split_channel_name("case_0000.nii", ".nii.gz") is None


def test_dataset_json_problems_are_all_listed(tmp_path: Path) -> None:
    where = tmp_path / "dataset.json"
    problems = dataset_json_problems({"labels": {"lesion": 1}, "numTraining": -1}, where)
    assert len(problems) == 4
    assert all(line.startswith(str(where)) for line in problems)
    good = {
        "channel_names": {"0": "T1"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": 3,
        "file_ending": ".nii.gz",
    }
    assert dataset_json_problems(good, where) == []


def test_training_cases_group_channels(dataset_factory) -> None:
    root = dataset_factory(cases=2, channels=2)
    dataset = RawDataset.open(root)
    cases = dataset.training_cases()
    assert [c.case_id for c in cases] == ["case000", "case001"]
    assert [p.name for p in cases[1].image_files] == ["case001_0000.nii.gz", "case001_0001.nii.gz"]
    assert cases[0].label_file == root / "labelsTr" / "case000.nii.gz"
    assert dataset.dataset_json.num_channels == 2 and dataset.test_cases() == []


def test_open_keeps_unknown_dataset_json_fields(tiny_dataset: Path) -> None:
    payload = json.loads((tiny_dataset / "dataset.json").read_text())
    payload["reference"] = "somewhere"
    write_json(tiny_dataset / "dataset.json", payload)
    dataset = RawDataset.open(tiny_dataset)
    assert dataset.dataset_json.to_json()["reference"] == "somewhere"


def test_atomic_path_leaves_no_file_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.txt") as temp:
        temp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_workspace_overrides_one_root() -> None:
    workspace = Workspace.under("/data").replace(preprocessed="/ssd/pre", raw=None)
    assert workspace == Workspace(Path("/data/raw"), Path("/ssd/pre"), Path("/data/results"))
