"""Predictions of the real ISLES'22 cases as BIDS derivatives, checked by our validator,
and the lesion tables written beside them."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from autoseg.data.bids import derivative_problems, parse_name
from autoseg.data.sources import CaseSource
from autoseg.inference.bids import BASE_PROVENANCE, MODEL_PROVENANCE, derivative_name
from autoseg.pipeline.lesion_outputs import LesionOutputs
from autoseg.pipeline.predict_step import PredictOptions, predict
from tests.pipeline.isles_helpers import CONFIG, DATASET, isles_workspace
from tests.pipeline.model_helpers import affine_network, single_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread", "affine_network")
ANAT = "sub-strokecase0001/ses-0001/anat"
STEM = "sub-strokecase0001_ses-0001_space-orig_desc-lesion"


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.fixture
def isles(tmp_path: Path, realdata_dir: Path):
    return isles_workspace(tmp_path, realdata_dir)


def test_converted_test_cases_map_back_to_subject_and_session(isles, tmp_path: Path) -> None:
    workspace, _ = isles
    bids = tmp_path / "derivatives" / "autoseg"
    options = LesionOutputs(bids_out=bids, command_line="autoseg_predict -i ... --bids-out")
    predict(workspace, DATASET, workspace.raw / DATASET / "imagesTs", tmp_path / "pred",
            PredictOptions(device="cpu", save_probabilities=True,
                           lesion_outputs=options))  # fmt: skip
    assert derivative_problems(bids, MODEL_PROVENANCE) == []
    mask = bids / ANAT / f"{STEM}_mask.nii.gz"
    assert mask.read_bytes() == (tmp_path / "pred/strokecase0001.nii.gz").read_bytes()
    probseg = nib.load(bids / ANAT / f"{STEM}_probseg.nii.gz")
    assert probseg.get_data_dtype() == np.float32
    assert np.allclose(probseg.affine, nib.load(mask).affine)
    sidecar = json.loads((bids / ANAT / f"{STEM}_mask.json").read_text())
    assert sidecar["Type"] == "Lesion"
    assert sidecar["Sources"] == [
        "bids:raw:sub-strokecase0001/ses-0001/dwi/sub-strokecase0001_ses-0001_dwi.nii.gz",
        "bids:raw:sub-strokecase0001/ses-0001/dwi/sub-strokecase0001_ses-0001_adc.nii.gz",
    ]
    generated = sidecar["GeneratedBy"]
    checkpoint = workspace.results / DATASET / CONFIG / "fold_1" / "checkpoint_final.pt"
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert generated["checkpoint_sha256"][CONFIG]["1"] == digest
    assert generated["folds"] == {CONFIG: [0, 1]} and generated["dataset"] == DATASET
    assert generated["CommandLine"] == "autoseg_predict -i ... --bids-out"
    description = json.loads((bids / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["DatasetLinks"]["raw"].endswith("/ISLES-2022/rawdata")
    for folder in (bids, tmp_path / "pred"):
        [row] = read_tsv(folder / "cases.tsv")
        assert (row["participant_id"], row["session_id"]) == ("sub-strokecase0001", "ses-0001")
        lesions = read_tsv(folder / "lesions.tsv")
        assert len(lesions) == int(row["lesions"]) > 0
        assert all(0 < float(r["mean_probability"]) <= float(r["max_probability"]) <= 1
                   for r in lesions)  # fmt: skip


def test_predicting_straight_from_the_bids_tree(isles, tmp_path: Path) -> None:
    workspace, source = isles
    bids = tmp_path / "bids"
    predicted = predict(workspace, DATASET, source, tmp_path / "pred",
                        PredictOptions(device="cpu", source="isles22",
                                       lesion_outputs=LesionOutputs(bids_out=bids)))  # fmt: skip
    assert predicted == ["strokecase0001", "strokecase0009"]
    assert derivative_problems(bids, MODEL_PROVENANCE) == []
    names = sorted(p.name for p in bids.rglob("*_mask.nii.gz"))
    assert names == [f"{STEM}_mask.nii.gz",
                     "sub-strokecase0009_ses-0001_space-orig_desc-lesion_mask.nii.gz"]  # fmt: skip
    assert not list(bids.rglob("*_probseg.nii.gz"))  # no probabilities asked for
    rows = read_tsv(bids / "cases.tsv")
    assert [r["participant_id"] for r in rows] == ["sub-strokecase0001", "sub-strokecase0009"]
    assert rows[0]["mean_probability"] == "n/a"


def test_a_second_run_with_continue_rebuilds_the_tables(isles, tmp_path: Path) -> None:
    workspace, _ = isles
    images = workspace.raw / DATASET / "imagesTr"
    predict(workspace, DATASET, images, tmp_path / "pred", PredictOptions(device="cpu"))
    before = (tmp_path / "pred/lesions.tsv").read_text()
    (tmp_path / "pred/lesions.tsv").unlink()
    resume = PredictOptions(device="cpu", resume=True)
    assert predict(workspace, DATASET, images, tmp_path / "pred", resume) == []
    assert (tmp_path / "pred/lesions.tsv").read_text() == before


def test_derivative_names_keep_every_entity_in_bids_order() -> None:
    source = CaseSource("x", {"sub": "r001s001", "ses": "1", "acq": "fast",
                              "space": "MNI152NLin2009aSym", "run": "2"})  # fmt: skip
    assert derivative_name(source, "mask").name == (
        "sub-r001s001_ses-1_acq-fast_run-2_space-MNI152NLin2009aSym_desc-lesion_mask.nii.gz"
    )
    assert derivative_name(CaseSource("y", {"sub": "case001"}), "probseg").name == (
        "sub-case001_space-orig_desc-lesion_probseg.nii.gz"
    )
    assert parse_name("sub-01_ses-2_T1w.nii.gz").entities == (("sub", "01"), ("ses", "2"))


def test_the_validator_names_each_broken_rule(isles, tmp_path: Path) -> None:
    workspace, _ = isles
    bids = tmp_path / "bids"
    predict(workspace, DATASET, workspace.raw / DATASET / "imagesTs", tmp_path / "pred",
            PredictOptions(device="cpu", lesion_outputs=LesionOutputs(bids_out=bids)))  # fmt: skip
    mask = bids / ANAT / f"{STEM}_mask.nii.gz"
    mask.rename(bids / ANAT / "sub-strokecase0001_desc-lesion_ses-0001_mask.nii.gz")
    (bids / ANAT / "sub-strokecase0001_ses-0001_desc-lesion_probseg.nii.gz").write_bytes(b"")
    sidecar = bids / ANAT / f"{STEM}_mask.json"
    payload = json.loads(sidecar.read_text())
    del payload["Type"], payload["GeneratedBy"]["plans_id"]
    (bids / ANAT / "sub-strokecase0001_desc-lesion_ses-0001_mask.json").write_text(
        json.dumps(payload)
    )
    sidecar.unlink()
    description = json.loads((bids / "dataset_description.json").read_text())
    description["DatasetType"] = "raw"
    (bids / "dataset_description.json").write_text(json.dumps(description))
    (bids / "notes.txt").write_text("x")
    moved = "sub-strokecase0001_desc-lesion_ses-0001_mask"
    assert derivative_problems(bids, MODEL_PROVENANCE) == [
        f"{bids / 'dataset_description.json'}: 'DatasetType' must be 'derivative'",
        f"{bids / 'notes.txt'}: not a file that belongs at the root",
        f"{bids / ANAT / (moved + '.json')}: entities out of order (BIDS order: "
        + "sub, ses, sample, task, tracksys, acq, nuc, voi, ce, trc, stain, rec, dir, run, mod, "
        + "echo, flip, inv, mt, part, proc, hemi, space, split, recording, chunk, seg, res, den, "
        + "label, desc)",
        f"{bids / ANAT / (moved + '.nii.gz')}: entities out of order (BIDS order: "
        + "sub, ses, sample, task, tracksys, acq, nuc, voi, ce, trc, stain, rec, dir, run, mod, "
        + "echo, flip, inv, mt, part, proc, hemi, space, split, recording, chunk, seg, res, den, "
        + "label, desc)",
        f"{bids / ANAT / (moved + '.json')}: lacks 'Type'",
        f"{bids / ANAT / (moved + '.json')}: 'GeneratedBy' lacks 'plans_id'",
        f"{bids / ANAT / 'sub-strokecase0001_ses-0001_desc-lesion_probseg.nii.gz'}: no JSON "
        "sidecar sub-strokecase0001_ses-0001_desc-lesion_probseg.json",
    ]
    assert set(BASE_PROVENANCE) <= set(MODEL_PROVENANCE)
