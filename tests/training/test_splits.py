"""Splits: folds partition the cases, subjects never straddle folds, files are reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoseg.core.atomic import write_json
from autoseg.core.errors import InvalidInputError
from autoseg.training.splits import cases_of_fold, load_or_create_splits, make_splits, subject_of


def test_subject_of_strips_session_entities() -> None:
    assert subject_of("sub-strokecase0001_ses-0002") == "sub-strokecase0001"
    assert subject_of("r001s001") == "r001s001"
    assert subject_of("patient7_tp2") == "patient7"


def test_folds_partition_cases_and_keep_subjects_together() -> None:
    ids = [f"sub-{s:02d}_ses-{v}" for s in range(9) for v in (1, 2)] + ["sub-99_ses-1"]
    splits = make_splits(ids, num_folds=5, seed=3)
    vals = [set(fold["val"]) for fold in splits]
    assert set().union(*vals) == set(ids) and sum(len(v) for v in vals) == len(ids)
    for fold in splits:
        assert set(fold["train"]).isdisjoint(fold["val"])
        assert {subject_of(c) for c in fold["train"]}.isdisjoint(
            {subject_of(c) for c in fold["val"]}
        )
    assert max(len(v) for v in vals) - min(len(v) for v in vals) <= 2


def test_seed_decides_and_reproduces() -> None:
    ids = [f"c{i}" for i in range(20)]
    assert make_splits(ids, seed=1) == make_splits(ids, seed=1)
    assert make_splits(ids, seed=1) != make_splits(ids, seed=2)


def test_existing_edited_file_is_kept(tmp_path: Path) -> None:
    ids = [f"c{i}" for i in range(6)]
    edited = [{"train": ids[:5], "val": ids[5:]}]
    write_json(tmp_path / "splits.json", edited)
    assert load_or_create_splits(tmp_path / "splits.json", ids) == edited
    assert cases_of_fold(edited, 0) == (ids[:5], ids[5:])
    assert cases_of_fold(edited, "all") == (sorted(ids), [])
    with pytest.raises(InvalidInputError, match="fold 3 does not exist"):
        cases_of_fold(edited, 3)


def test_unknown_cases_in_file_are_rejected(tmp_path: Path) -> None:
    write_json(tmp_path / "splits.json", [{"train": ["ghost"], "val": []}])
    with pytest.raises(InvalidInputError, match="unknown case 'ghost'"):
        load_or_create_splits(tmp_path / "splits.json", ["a", "b"])


def test_too_few_cases_is_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="3 training cases cannot make 5 folds"):
        make_splits(["a", "b", "c"])
