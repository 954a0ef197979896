"""``autoseg_find_best``: compare configurations and their ensembles on cross-validation.

Every configuration's CV result pools the per-case metrics of its folds' validation
summaries (``fold_<k>/validation/summary.json``), so folds of unequal size weigh by case.
Every pair of configurations is ensembled fold by fold from the saved validation
probabilities into ``results/<NAME>/ensembles/<a>+<b>/fold_<k>/`` and scored the same way.
The best candidate has the highest mean Dice (ties: lesion-wise F1); its postprocessing is
then chosen on the same validation cases (:mod:`autoseg.pipeline.cv_postprocessing`).

Each configuration's temperature is fitted first on its validation probabilities
(:mod:`autoseg.pipeline.calibration`), and everything after works on calibrated
probabilities as prediction will: ensembles average them, postprocessing thresholds
are chosen on them. Argmax labels, and so each configuration's own CV metrics, do not
change with the temperature.

Without any validated numbered fold, the configurations' fold ``all`` validations stand
in: scores on the model's own training cases (resubstitution, see
:mod:`autoseg.pipeline.validation`). They are optimistic, so they are marked as such in
the notes, they neither rank configurations (the plans' recommended one is kept when it
is among them) nor build ensembles, and no temperature is fitted on them; what they are
good for is the choice of postprocessing for a model trained on every case, where
nothing else is held out, and then only of a minimum lesion size (see
:func:`~autoseg.pipeline.cv_postprocessing.search_postprocessing`).

Writes ``results/<NAME>/find_best.json`` (every candidate, the winner, the postprocessing
search) and ``results/<NAME>/inference.json`` (what a plain ``autoseg_predict -d NAME``
uses), both atomically.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoseg.core.atomic import read_json, write_json
from autoseg.core.errors import InvalidInputError
from autoseg.core.paths import ensure_writable_dir
from autoseg.core.run_layout import (
    ENSEMBLES_FOLDER,
    FIND_BEST_JSON,
    SUMMARY_JSON,
    VALIDATION_FOLDER,
    ConfigLayout,
    RunLayout,
    configurations_in,
    fold_folder_name,
)
from autoseg.core.workspace import Workspace
from autoseg.data.layout import RawDataset
from autoseg.evaluation.summary import CaseResult, summarise
from autoseg.inference.choice import planned_postprocessing, write_inference_choice
from autoseg.inference.ensemble import ensemble_folders, probability_files
from autoseg.inference.model import fold_json, read_dataset_json
from autoseg.pipeline.calibration import Calibration, calibrate_configuration
from autoseg.pipeline.cv_postprocessing import search_postprocessing
from autoseg.pipeline.validation import (
    evaluate_cases,
    foreground_labels,
    open_raw,
    validation_ids,
)
from autoseg.plans import load_plans
from autoseg.training.splits import read_splits

TABLE_METRICS = (("dice", "Dice"), ("hd95_mm", "HD95 mm"), ("lesion_f1", "lesion F1"),
                 ("abs_volume_diff_ml", "|dV| ml"))  # fmt: skip


@dataclass(frozen=True)
class Candidate:
    """A configuration or an ensemble, with its validation folders and CV summary."""

    name: str
    configurations: tuple[str, ...]
    folds: tuple[str, ...]
    folders: tuple[Path, ...]
    summary: dict[str, Any]

    @property
    def resubstitution(self) -> bool:
        """Scored on fold ``all``'s own training cases, not on cross-validation."""
        return self.folds == ("all",)

    def score(self) -> tuple[float, float]:
        """Mean Dice, then mean lesion F1 (NaN-free: a missing value ranks last)."""
        mean = self.summary["mean"]
        return tuple(  # type: ignore[return-value]
            -math.inf if mean.get(k) is None else float(mean[k]) for k in ("dice", "lesion_f1")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "configurations": list(self.configurations),
            "folds": [fold_json(f) for f in self.folds],
            "num_cases": self.summary["num_cases"],
            "mean": self.summary["mean"],
            "mean_nonempty_reference": self.summary["mean_nonempty_reference"],
        }


def _case_result(case: dict[str, Any]) -> CaseResult:
    """A per-case entry of summary.json back as a CaseResult (null -> NaN)."""
    metrics = {
        int(label): {k: math.nan if v is None else float(v) for k, v in values.items()}
        for label, values in case["metrics"].items()
    }
    voxels = {int(k): int(v) for k, v in case.get("reference_voxels", {}).items()}
    return CaseResult(case["case_id"], case["reference_file"], case["prediction_file"],
                      metrics, voxels)  # fmt: skip


def pooled_summary(summary_files: Sequence[Path]) -> dict[str, Any]:
    """One summary over the cases of several fold summaries."""
    summaries = [read_json(path) for path in summary_files]
    labels = sorted({int(label) for s in summaries for label in s["labels"]})
    cases = [_case_result(case) for s in summaries for case in s["cases"]]
    return summarise(cases, labels)


def configuration_candidate(
    results: Path, name: str, num_folds: int, notes: list[str]
) -> Candidate | None:
    """A configuration's CV candidate from the folds that have a validation summary."""
    config = ConfigLayout(results / name)
    folds = {str(k): config.fold(k) for k in range(num_folds)}
    done = {k: f.validation for k, f in folds.items() if f.validation_summary.is_file()}
    if not done:
        notes.append(f"{name}: no fold has {VALIDATION_FOLDER}/{SUMMARY_JSON}; skipped")
        return None
    if len(done) < num_folds:
        notes.append(f"{name}: only folds {', '.join(done)} of {num_folds} validated; "
                     "its CV rests on those")  # fmt: skip
    summary = pooled_summary([f / SUMMARY_JSON for f in done.values()])
    return Candidate(name, (name,), tuple(done), tuple(done.values()), summary)


def resubstitution_candidate(results: Path, name: str) -> Candidate | None:
    """A configuration's fold ``all`` scored on its own training cases, if validated."""
    fold = ConfigLayout(results / name).fold("all")
    if not fold.validation_summary.is_file():
        return None
    summary = pooled_summary([fold.validation_summary])
    return Candidate(name, (name,), ("all",), (fold.validation,), summary)


def ensemble_candidate(
    results: Path,
    pair: tuple[Candidate, Candidate],
    raw: RawDataset,
    splits: list[dict[str, list[str]]],
    evaluation: dict[str, Any],
    notes: list[str],
    temperatures: dict[str, float] | None = None,
) -> Candidate | None:
    """Average two configurations' calibrated validation probabilities fold by fold and
    score them."""
    a, b = pair
    name = f"{a.name}+{b.name}"
    common = [f for f in a.folds if f in b.folds]
    usable = [
        f for f in common if all(probability_files(c.folders[c.folds.index(f)]) for c in (a, b))
    ]
    if not usable:
        notes.append(f"{name}: no fold with saved probabilities in both; not ensembled")
        return None
    folders = []
    for fold in usable:
        out = results / ENSEMBLES_FOLDER / name / fold_folder_name(fold)
        inputs = [c.folders[c.folds.index(fold)] for c in (a, b)]
        scales = [(temperatures or {}).get(c.name, 1.0) for c in (a, b)]
        ensemble_folders(inputs, out, save_probabilities=True, overwrite=True,
                         temperatures=scales)  # fmt: skip
        ids = validation_ids(splits, fold, results)
        evaluate_cases(raw, ids, out, out / SUMMARY_JSON, **evaluation)
        folders.append(out)
    summary = pooled_summary([f / SUMMARY_JSON for f in folders])
    return Candidate(name, (a.name, b.name), tuple(usable), tuple(folders), summary)


def list_configurations(results: Path) -> list[str]:
    """Configuration folders of ``results/<NAME>`` (those holding a plans.json copy)."""
    return configurations_in(results)


def calibrations(
    single: Sequence[Candidate], raw: RawDataset, notes: list[str]
) -> dict[str, Calibration]:
    """The fitted temperature of every configuration that saved validation probabilities."""
    fitted = {}
    for candidate in single:
        found = calibrate_configuration(candidate.folders, raw)
        if found is None:
            notes.append(f"{candidate.name}: no saved validation probabilities; not calibrated")
        else:
            fitted[candidate.name] = found
    return fitted


def single_candidates(
    results: Path, names: Sequence[str], splits: list[dict[str, list[str]]], notes: list[str]
) -> list[Candidate]:
    """Every configuration's CV candidate, or, when no numbered fold is validated, their
    fold ``all`` resubstitution candidates."""
    cv_notes: list[str] = []
    single = [c for n in names if (c := configuration_candidate(results, n, len(splits), cv_notes))]
    if single:
        notes += cv_notes
        return single
    single = [c for n in names if (c := resubstitution_candidate(results, n))]
    if not single:
        raise InvalidInputError(
            f"{results}: no configuration has validation summaries "
            "(train folds, or run autoseg_train --val-only)"
        )
    notes.append("no numbered fold is validated: candidates are scored on fold all's own "
                 "training cases (resubstitution), optimistic figures that are not "
                 "cross-validation; they choose a minimum lesion size only, and no "
                 "temperature is fitted on them")  # fmt: skip
    return single


def _candidates(
    workspace: Workspace, results: Path, names: Sequence[str], convention: str, notes: list[str]
) -> tuple[list[Candidate], dict[str, Calibration]]:
    splits_file = RunLayout(workspace, results.name).splits
    splits = read_splits(splits_file) if splits_file.is_file() else []
    single = single_candidates(results, names, splits, notes)
    if single[0].resubstitution:
        return single, {}
    raw = open_raw(workspace, results.name)
    fitted = calibrations(single, raw, notes)
    temperatures = {name: c.temperature for name, c in fitted.items()}
    labels = foreground_labels(read_dataset_json(results / single[0].name)[0])
    evaluation = {"labels": labels, "convention": convention}
    pairs = [
        c
        for pair in itertools.combinations(single, 2)
        if (c := ensemble_candidate(results, pair, raw, splits, evaluation, notes, temperatures))
    ]
    return single + pairs, fitted


def best_candidate(results: Path, candidates: Sequence[Candidate]) -> Candidate:
    """The highest CV score; on resubstitution the plans' recommended configuration, since
    training-case scores favour whichever model memorised most."""
    if not candidates[0].resubstitution:
        return max(candidates, key=Candidate.score)
    plans = load_plans(ConfigLayout(results / candidates[0].name).plans)
    recommended = [c for c in candidates if c.name == plans.recommended_configuration]
    return recommended[0] if recommended else max(candidates, key=Candidate.score)


def find_best(
    workspace: Workspace,
    dataset: str,
    configurations: Sequence[str] | None = None,
    convention: str = "isles22",
    checkpoint: str = "final",
) -> dict[str, Any]:
    """Pick the best configuration or 2-configuration ensemble on CV, and its postprocessing.

    Args:
        workspace: raw / preprocessed / results roots.
        dataset: dataset name.
        configurations: configurations to compare; None: every one in ``results/<NAME>``.
        convention: lesion convention of the metrics (``isles22`` or ``atlas``).
        checkpoint: the checkpoint the validation predictions came from (recorded in
            inference.json for prediction).

    Returns:
        The find_best.json payload (``notes`` lists skipped or partial candidates);
        :func:`format_table` prints it.

    Raises:
        InvalidInputError: no results, no splits, or no validated configuration.
    """
    results = ensure_writable_dir(
        RunLayout.of_results(workspace, dataset).results, "results folder"
    )
    notes: list[str] = []
    names = list(configurations) if configurations else list_configurations(results)
    candidates, fitted = _candidates(workspace, results, names, convention, notes)
    best = best_candidate(results, candidates)
    raw = open_raw(workspace, results.name)
    labels = foreground_labels(read_dataset_json(results / best.configurations[0])[0])
    # An ensemble's folders hold calibrated averages already; a configuration's do not.
    single = len(best.configurations) == 1 and best.name in fitted
    temperature = fitted[best.name].temperature if single else 1.0
    post, search, after = search_postprocessing(
        best.folders, raw.labels_tr, raw.dataset_json.file_ending, labels, convention,
        temperature, sizes_only=best.resubstitution,
        base=planned_postprocessing(results, best.configurations[0]),
    )  # fmt: skip
    calibration = {name: c.to_json() for name, c in sorted(fitted.items())}
    payload = {
        "dataset": results.name,
        "convention": convention,
        "candidates": [c.to_json() for c in candidates],
        "best": {
            **{k: v for k, v in best.to_json().items() if k != "mean_nonempty_reference"},
            "postprocessing": post,
            "mean_after_postprocessing": after.get("mean", best.summary["mean"]),
        },
        "postprocessing_search": search,
        "calibration": calibration,
        "notes": notes,
    }
    write_json(results / FIND_BEST_JSON, payload)
    write_inference_choice(results, best.configurations, best.folds, post, checkpoint,
                           convention, calibration)  # fmt: skip
    return payload


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_table(payload: dict[str, Any]) -> str:
    """The CV table: one row per candidate, the winner starred, then notes and choice."""
    header = ["", "candidate", *[title for _, title in TABLE_METRICS], "n cases"]
    rows = [
        ["*" if c["name"] == payload["best"]["name"] else "", c["name"],
         *[_cell(c["mean"].get(key)) for key, _ in TABLE_METRICS], str(c["num_cases"])]
        for c in payload["candidates"]
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in [header, *rows]
    ]
    best = payload["best"]
    after = best["mean_after_postprocessing"]
    lines.append(
        f"best: {best['name']} (folds {', '.join(map(str, best['folds']))}); postprocessing "
        f"{best['postprocessing'] or 'none'}: Dice {_cell(after.get('dice'))}, "
        f"lesion F1 {_cell(after.get('lesion_f1'))}"
    )
    lines += [
        f"calibration: {name} temperature {c['temperature']:.3f}, expected calibration error "
        f"{c['ece_before']:.4f} -> {c['ece_after']:.4f} ({c['voxels']} voxels of "
        f"{c['cases']} CV cases)"
        for name, c in payload.get("calibration", {}).items()
    ]
    lines += [f"note: {note}" for note in payload.get("notes", [])]
    return "\n".join(line.rstrip() for line in lines)
