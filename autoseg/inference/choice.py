"""find_best's choice (``results/<NAME>/inference.json``): written by autoseg_find_best, read
by autoseg_predict and autoseg_export to know which configurations, folds, checkpoint,
postprocessing and temperatures to predict with.

The record (every key optional except ``configurations``)::

    {"configurations": ["3d_hybrid", ...], "folds": [0, 1, ...], "checkpoint": "final",
     "postprocessing": {...}, "convention": "isles22",
     "calibration": {"3d_hybrid": {"temperature": 1.3, ...}}}
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoseg.core.atomic import read_json, write_json
from autoseg.core.errors import InvalidInputError
from autoseg.core.run_layout import INFERENCE_JSON, ConfigLayout, checkpoint_name, configurations_in
from autoseg.inference.model import fold_id, fold_json, trained_folds
from autoseg.plans import load_plans


def write_inference_choice(
    results_dir: Path,
    configurations: Sequence[str],
    folds: Sequence[str],
    postprocessing: dict[str, Any],
    checkpoint: str,
    convention: str,
    calibration: dict[str, Any],
) -> None:
    """Record find_best's winner for autoseg_predict (atomically)."""
    write_json(Path(results_dir) / INFERENCE_JSON, {
        "configurations": list(configurations),
        "folds": [fold_json(f) for f in folds],
        "postprocessing": postprocessing,
        "checkpoint": checkpoint,
        "convention": convention,
        "calibration": calibration,
    })  # fmt: skip


def trained_configurations(results_dir: Path, checkpoint: str = "final") -> list[str]:
    """Configuration folders of ``results/<NAME>`` with at least one trained fold."""
    return [
        name
        for name in configurations_in(results_dir)
        if trained_folds(Path(results_dir) / name, checkpoint)
    ]


def read_inference_choice(results_dir: Path) -> dict[str, Any] | None:
    """``results/<NAME>/inference.json`` (find_best's choice), or None when absent."""
    path = Path(results_dir) / INFERENCE_JSON
    if not path.is_file():
        return None
    try:
        choice = read_json(path)
    except ValueError as error:
        raise InvalidInputError(str(error)) from error
    if not isinstance(choice, dict) or not choice.get("configurations"):
        raise InvalidInputError(f"{path}: needs a non-empty 'configurations' list")
    return choice


def calibration_temperatures(results_dir: Path) -> dict[str, float]:
    """``{configuration: temperature}`` that find_best fitted (inference.json), or {}."""
    choice = read_inference_choice(results_dir) or {}
    fitted = choice.get("calibration") or {}
    try:
        return {name: float(entry["temperature"]) for name, entry in fitted.items()}
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidInputError(
            f"{Path(results_dir) / INFERENCE_JSON}: 'calibration' entries need a "
            f"'temperature' ({error})"
        ) from error


def recommended_configuration(results_dir: Path, checkpoint: str) -> str:
    """The plans' recommended configuration if trained, else the only trained one."""
    trained = trained_configurations(results_dir, checkpoint)
    if not trained:
        raise InvalidInputError(
            f"{results_dir}: no configuration has a trained fold with {checkpoint_name(checkpoint)}"
        )
    recommended = load_plans(ConfigLayout(results_dir / trained[0]).plans).recommended_configuration
    if recommended in trained:
        return recommended
    if len(trained) == 1:
        return trained[0]
    raise InvalidInputError(
        f"{results_dir}: the recommended configuration '{recommended}' is not trained; "
        f"pick one with -c ({', '.join(trained)}) or run autoseg_find_best"
    )


def planned_postprocessing(results_dir: Path, configuration: str) -> dict[str, Any]:
    """The plans' default postprocessing (a size rule from the training labels), or {}
    for plans made before there was one or a configuration with no folder."""
    path = ConfigLayout(Path(results_dir) / configuration).plans
    return dict(load_plans(path).postprocessing or {}) if path.is_file() else {}


def resolve_choice(
    results_dir: Path,
    configurations: Sequence[str] | None,
    folds: Sequence[int | str] | None,
    checkpoint: str | None,
) -> tuple[list[str], list[int | str] | None, dict[str, Any], str]:
    """Configurations, folds, postprocessing and checkpoint to predict with.

    The postprocessing is the plans' default with inference.json's choice on top; the
    choice applies only to the ensemble it was chosen for.
    """
    choice = read_inference_choice(results_dir) or {}
    chosen = list(choice.get("configurations", []))
    if configurations is None and chosen:
        folds = folds if folds is not None else choice.get("folds")
        configurations = chosen
    elif configurations is None:
        configurations = [recommended_configuration(results_dir, checkpoint or "final")]
    same = sorted(configurations) == sorted(chosen) and (
        folds is None
        or [fold_id(f) for f in folds] == [fold_id(f) for f in choice.get("folds") or []]
    )
    chosen_post = dict(choice.get("postprocessing") or {}) if same else {}
    post = {**planned_postprocessing(results_dir, configurations[0]), **chosen_post}
    checkpoint = checkpoint or (choice.get("checkpoint") if same else None) or "final"
    return list(configurations), None if folds is None else list(folds), post, checkpoint
