"""The plans schema: byte-stable round trips, defaults for missing keys, unknown keys
refused with the key and the file, no torch, and no stage decoding plans dicts itself."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from autoseg.core.errors import InvalidInputError
from autoseg.plans import (
    Augmentation,
    InferenceWindow,
    TrainingSchedule,
    augmentation_defaults,
    load_plans,
    write_plans,
)
from autoseg.plans.files import compute_plans_id
from autoseg.plans.jsonutil import canonical_json

PACKAGE = Path(__file__).resolve().parents[2] / "autoseg"
GOLDEN = sorted((Path(__file__).resolve().parents[1] / "planning" / "golden").glob("plans_*"))
# Keys only plans have: reading one with .get(key, default) outside autoseg/plans means a
# stage decodes the plans itself (and declares a default again); so does reading a part
# of a configuration by subscript.
PLANS_KEYS = (
    "training", "inference", "slice_context", "preprocessing", "normalization", "epochs",
    "iterations_per_epoch", "validation_iterations", "lr", "momentum", "weight_decay",
    "optimizer", "schedule", "loss", "loss_kwargs", "oversample_foreground",
    "per_lesion_sampling", "gradient_clip", "auxiliary_loss_weight",
    "deep_supervision_weights", "amp", "activation_checkpointing", "gaussian",
    "gaussian_sigma_scale", "rotation_axes", "crop_to_nonzero", "anisotropy_threshold",
    "data_dtype", "foreground_samples", "patch_size", "data_id", "memory_estimate_gb",
    "recommended_configuration", "gpu_memory_source",
)  # fmt: skip
PARTS = ("training", "inference", "augmentation", "slice_context", "preprocessing")
# The report renders whatever a plans.json holds (files of other versions too), "n/a" for
# what is missing: it displays the JSON, it does not decode settings from it.
NOT_A_STAGE = ("plans", "reporting")


def edited(tmp_path: Path, change: Callable[[dict], object]) -> Path:
    payload = json.loads(GOLDEN[0].read_text())
    change(payload)
    path = tmp_path / "edited.json"
    path.write_text(canonical_json(payload))
    return path


@pytest.mark.parametrize("golden", GOLDEN, ids=lambda p: p.stem)
def test_golden_plans_read_and_write_byte_for_byte(golden: Path, tmp_path: Path) -> None:
    plans = load_plans(golden)
    assert plans.plans_id == json.loads(golden.read_text())["plans_id"]
    write_plans(tmp_path / "plans.json", plans)
    assert (tmp_path / "plans.json").read_text() == golden.read_text()


def test_fixture_plans_round_trip(tmp_path: Path) -> None:
    from tests.pipeline.isles_helpers import isles_plans
    from tests.pipeline.model_helpers import affine_spec, hybrid_spec, make_plans

    for plans in (make_plans({"3d_hybrid": hybrid_spec(), "a": affine_spec([0.0, 1.0])}),
                  isles_plans()):  # fmt: skip
        write_plans(tmp_path / "plans.json", plans)
        again = load_plans(tmp_path / "plans.json")
        assert again == plans and again.text() == (tmp_path / "plans.json").read_text()


def test_missing_keys_take_the_defaults_and_stay_missing(tmp_path: Path) -> None:
    def drop(payload: dict) -> None:
        entry = payload["configurations"]["2d_lcnn"]
        for key in ("preprocessing", "slice_context", "fits_budget", "memory_estimate"):
            del entry[key]
        for key in ("gradient_clip", "oversample_foreground", "epochs"):
            del entry["training"][key]
        del entry["inference"]["gaussian_sigma_scale"]
        entry["augmentation"] = {"probability": 1.0}

    path = edited(tmp_path, drop)
    plans = load_plans(path)
    config = plans.configuration("2d_lcnn")
    assert config.training.gradient_clip == TrainingSchedule.gradient_clip == 12.0
    assert config.training.epochs == 1000 and config.training.oversample_foreground == 0.33
    assert config.inference.gaussian_sigma_scale == InferenceWindow.gaussian_sigma_scale
    assert config.slices == 1 and config.preprocessing.foreground_samples == 10000
    # a 2D entry's augmentation defaults are the 2D ones (full-circle in-plane rotation)
    assert config.augmentation.rotation_deg == augmentation_defaults(2).rotation_deg
    assert config.augmentation.probability == 1.0
    written = json.loads(path.read_text())  # written back without the defaults:
    assert plans.to_json() == {**written, "plans_id": compute_plans_id(written)}


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda p: p.update(colour="blue"), "unknown key 'colour'"),
        (lambda p: p["configurations"]["3d_hybrid"].update(colour=1),
         "configurations.3d_hybrid: unknown key 'colour'"),
        (lambda p: p["configurations"]["3d_hybrid"]["training"].update(epoch=5),
         "configurations.3d_hybrid.training: unknown key 'epoch'"),
        (lambda p: p["configurations"]["2d_lcnn"]["augmentation"].update(rotate=True),
         "configurations.2d_lcnn.augmentation: unknown key 'rotate'"),
        (lambda p: p["configurations"]["2d_lcnn"]["normalization"][0].update(clip=1),
         "configurations.2d_lcnn.normalization.0: unknown key 'clip'"),
        (lambda p: p["configurations"]["2d_lcnn"]["augmentation"].update(
            probabilities={"lowres": 0}),
         "configurations.2d_lcnn.augmentation: probabilities: unknown transform 'lowres'"),
        (lambda p: p["configurations"]["2d_lcnn"]["augmentation"].update(
            probabilities={"blur": 2}),
         "probabilities.blur: 2 is not a chance in [0, 1]"),
    ],
)  # fmt: skip
def test_unknown_keys_are_refused_naming_key_and_file(
    change: Callable[[dict], object], where: str, tmp_path: Path
) -> None:
    path = edited(tmp_path, change)
    with pytest.raises(InvalidInputError) as error:
        load_plans(path)
    assert error.value.problems[0].startswith(f"{path}: ")
    assert where in error.value.problems[0]


def test_augmentation_settings_complete_the_named_chances() -> None:
    settings = Augmentation.from_json({"probabilities": {"gamma": 0.5}}, "a").settings()
    assert settings["probabilities"]["gamma"] == 0.5
    assert settings["probabilities"]["noise"] == 0.1
    assert settings["rotation_deg"] == [-30.0, 30.0]


def test_the_schema_does_not_import_torch() -> None:
    code = "import sys, autoseg.plans; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_no_stage_decodes_plans_dicts_itself() -> None:
    keys, parts = "|".join(PLANS_KEYS), "|".join(PARTS)
    pattern = re.compile(
        rf"""\.get\(\s*["']({keys})["']"""  # .get("key" ...), the call may span lines
        rf"""|\[["']({parts})["']\](?!\s*=[^=])"""  # config["training"], not assigned to
    )
    found = [
        f"{path.relative_to(PACKAGE)}:{text.count(chr(10), 0, match.start()) + 1}: "
        + match.group(0)
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in NOT_A_STAGE
        for text in [path.read_text()]
        for match in pattern.finditer(text)
    ]
    assert not found, "\n".join(found)
