"""``autoseg_evaluate --lesion-tables --bids-out``: tables of predictions and references
(the real ISLES'22 mask as both), a valid derivative dataset, flags checked."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from autoseg.cli import EXIT_INVALID, EXIT_OK, evaluate_main
from autoseg.data.bids import derivative_problems
from autoseg.data.convert import convert
from autoseg.inference.bids import BASE_PROVENANCE
from tests.data.convert_helpers import release_tree


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_reference_mask_as_prediction(tmp_path: Path, realdata_dir: Path) -> None:
    raw = tmp_path / "raw/ISLES"
    convert("isles22", release_tree(tmp_path / "src", realdata_dir), raw, progress=False)
    predictions = tmp_path / "pred"
    shutil.copytree(raw / "labelsTr", predictions)
    out, bids = tmp_path / "eval/metrics.json", tmp_path / "bids"
    argv = ["-r", str(raw / "labelsTr"), "-p", str(predictions), "-o", str(out),
            "--lesion-tables", "--bids-out", str(bids)]  # fmt: skip
    assert evaluate_main(argv) == EXIT_OK
    assert json.loads(out.read_text())["mean"]["dice"] == 1.0
    predicted = read_tsv(tmp_path / "eval/metrics_lesions.tsv")
    reference = read_tsv(tmp_path / "eval/metrics_reference_lesions.tsv")
    assert predicted == reference and len(predicted) == 18
    assert {r["hemisphere_method"] for r in predicted} == {"brain_midsagittal"}
    [case] = read_tsv(tmp_path / "eval/metrics_cases.tsv")
    assert (case["participant_id"], case["volume_ml"]) == ("sub-strokecase0009", "4.1840")
    assert derivative_problems(bids, BASE_PROVENANCE) == []
    sidecar = next(bids.rglob("*_mask.json"))
    generated = json.loads(sidecar.read_text())["GeneratedBy"]
    assert generated["CommandLine"].startswith("autoseg_evaluate -r ")
    assert read_tsv(bids / "lesions.tsv") == predicted


def test_atlas_without_names_exits_2(tmp_path: Path, capsys) -> None:
    argv = ["-r", str(tmp_path), "-p", str(tmp_path), "-o", str(tmp_path / "m.json"),
            "--atlas", str(tmp_path / "a.nii.gz")]  # fmt: skip
    assert evaluate_main(argv) == EXIT_INVALID
    assert "--atlas and --atlas-names go together" in capsys.readouterr().err
