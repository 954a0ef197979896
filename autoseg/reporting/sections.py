"""Report sections built from JSON/CSV inputs: fingerprint, plans, training, CV, test.

Each builder takes the parsed input (None when missing) and returns a
:class:`~autoseg.reporting.html.Section`; a missing input becomes a "not available yet"
line, never an error, so a report can be written at any stage after planning.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from autoseg.core.run_layout import FIND_BEST_JSON
from autoseg.reporting.collect import TrainingLog, case_dice
from autoseg.reporting.figures import figure_uri, lesion_volume_histogram, training_curves
from autoseg.reporting.html import Section, esc, fmt, image, not_available, table

TEST_METRICS = (
    "dice",
    "iou",
    "precision",
    "sensitivity",
    "hd95_mm",
    "assd_mm",
    "abs_volume_diff_ml",
    "lesion_f1",
    "abs_lesion_count_diff",
)
SUMMARY_ROWS = {"mean": "mean", "median": "median", "std": "std",
                "mean_nonempty_reference": "mean, non-empty reference"}  # fmt: skip
CV_METRICS = ("dice", "hd95_mm", "abs_volume_diff_ml", "lesion_f1")


def _median_range(summary: dict[str, Any] | None, unit: str = "") -> str:
    """``median (min - max)`` of an axis or scalar summary from the fingerprint."""
    if not summary:
        return "n/a"
    parts = [fmt(summary.get(k), 2) for k in ("median", "min", "max")]
    return f"{parts[0]} ({parts[1]} to {parts[2]}){unit}"


def _channels(fingerprint: dict[str, Any]) -> str:
    names = [f"{c.get('name')} ({c.get('modality')})" for c in fingerprint.get("channels", [])]
    return ", ".join(names) or "n/a"


def fingerprint_section(fingerprint: dict[str, Any]) -> Section:
    """Cases, modalities, spacings, sizes and lesion burden, with a lesion-volume histogram."""
    lesions = fingerprint.get("lesions", {})
    rows = [
        ("cases", fingerprint.get("num_cases")),
        ("cases with a lesion", lesions.get("cases_with_lesion")),
        ("channels (modality)", _channels(fingerprint)),
        ("spacing (z, y, x) mm", _median_range(fingerprint.get("spacing_mm"))),
        ("shape (z, y, x) voxels", _median_range(fingerprint.get("shape"))),
        ("shape after crop", _median_range(fingerprint.get("shape_after_crop"))),
        ("lesion volume per case (ml)", _median_range(lesions.get("volume_ml"))),
        ("lesions per case", _median_range(lesions.get("num_lesions"))),
        (
            "smallest / largest lesion (ml)",
            f"{fmt(lesions.get('smallest_ml'))} / {fmt(lesions.get('largest_ml'))}",
        ),
    ]
    volumes = [c.get("lesions", {}).get("volume_ml", 0.0) for c in fingerprint.get("cases", [])]
    figure = image(
        figure_uri(lesion_volume_histogram(volumes)),
        "lesion volume histogram",
        "Total lesion volume per training case (log scale).",
    )
    note = "<p class='note'>Ranges are median (min to max) over cases.</p>"
    return Section("fingerprint", "Dataset fingerprint", table(["", "value"], rows) + note + figure)


def _plan_row(name: str, config: dict[str, Any], budget: float | None, best: str) -> list[Any]:
    memory = config.get("memory_estimate_gb")
    share = f"{100 * memory / budget:.0f}%" if memory is not None and budget else "n/a"
    label = f"{name} (recommended)" if name == best else name
    return [
        label,
        config.get("network", {}).get("name"),
        config.get("patch_size"),
        config.get("batch_size"),
        config.get("spacing_mm"),
        config.get("parameters"),
        memory,
        share,
        config.get("training", {}).get("epochs"),
    ]


def plans_section(plans: dict[str, Any]) -> Section:
    """One row per configuration: patch, batch, size, memory estimate against the budget."""
    budget = plans.get("gpu_memory_gb")
    best = plans.get("recommended_configuration", "")
    configurations = plans.get("configurations", {})
    headers = [
        "configuration",
        "network",
        "patch",
        "batch",
        "spacing (mm)",
        "parameters",
        "memory estimate (GB)",
        "of budget",
        "epochs",
    ]
    rows = [_plan_row(name, c, budget, best) for name, c in configurations.items()]
    classes = ["recommended" if name == best else "" for name in configurations]
    intro = (
        f"<p>Memory budget: <b>{esc(fmt(budget, 1))} GB</b> "
        f"({esc(plans.get('gpu_memory_source', 'n/a'))}); plans id "
        f"<code>{esc(plans.get('plans_id', 'n/a'))}</code>; recommended: <b>{esc(best)}</b>.</p>"
    )
    return Section("plans", "Plans", intro + table(headers, rows, classes))


def _fold_row(fold: str, rows: TrainingLog) -> list[Any]:
    ema = [r.get("ema_dice", math.nan) for r in rows]
    finite = [v for v in ema if math.isfinite(v)]
    seconds = [r.get("epoch_seconds", math.nan) for r in rows]
    memory = [r.get("gpu_memory_gb", math.nan) for r in rows]
    peak = max((m for m in memory if math.isfinite(m)), default=None)
    return [
        fold,
        len(rows),
        rows[-1].get("train_loss"),
        rows[-1].get("val_loss"),
        max(finite) if finite else None,
        float(np.nansum(seconds)) / 60.0,
        peak,
    ]


def training_section(logs: dict[str, dict[str, TrainingLog]]) -> Section:
    """Curves per configuration (all folds in one figure) and a per-fold summary table."""
    if not logs:
        return Section("training", "Training", not_available("Training logs"))
    headers = [
        "fold",
        "epochs",
        "last train loss",
        "last val loss",
        "best EMA Dice",
        "minutes",
        "peak GPU memory (GB)",
    ]
    parts = []
    for configuration, folds in sorted(logs.items()):
        uri = figure_uri(training_curves(configuration, folds))
        parts.append(f"<h3>{esc(configuration)}</h3>")
        parts.append(image(uri, f"training curves of {configuration}"))
        parts.append(table(headers, [_fold_row(f, rows) for f, rows in sorted(folds.items())]))
    return Section("training", "Training", "".join(parts))


def _metric_cells(means: dict[str, Any] | None) -> list[Any]:
    return [(means or {}).get(key) for key in CV_METRICS]


def cv_section(find_best: dict[str, Any] | None) -> Section:
    """The cross-validation table of ``find_best.json`` and the chosen model."""
    if find_best is None:
        return Section("cv", "Cross-validation", not_available(FIND_BEST_JSON))
    best = find_best.get("best", {})
    headers = ["candidate", "folds", "cases", *CV_METRICS, "Dice (non-empty reference)"]
    rows, classes = [], []
    for candidate in find_best.get("candidates", []):
        nonempty = (candidate.get("mean_nonempty_reference") or {}).get("dice")
        folds = ", ".join(str(f) for f in candidate.get("folds") or [])
        rows.append(
            [
                candidate.get("name"),
                folds,
                candidate.get("num_cases"),
                *_metric_cells(candidate.get("mean")),
                nonempty,
            ]
        )
        classes.append("recommended" if candidate.get("name") == best.get("name") else "")
    body = table(headers, rows, classes)
    post = [
        ["best, raw", *_metric_cells(best.get("mean"))],
        ["best, after postprocessing", *_metric_cells(best.get("mean_after_postprocessing"))],
    ]
    body += f"<h3>Best: {esc(best.get('name', 'n/a'))}</h3>" + table(["", *CV_METRICS], post)
    post_json = json.dumps(best.get("postprocessing"), sort_keys=True)
    body += f"<p class='note'>Postprocessing: <code>{esc(post_json)}</code>; "
    body += f"convention: {esc(find_best.get('convention', 'n/a'))}.</p>"
    body += "".join(f"<p class='note'>{esc(note)}</p>" for note in find_best.get("notes", []))
    return Section("cv", "Cross-validation", body)


def case_metric_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    """Per-case rows (label means) of a metrics summary, worst Dice first (NaN last)."""
    dice = case_dice(metrics)
    rows = []
    for case in metrics.get("cases", []):
        per_label = list(case.get("metrics", {}).values())
        cells = []
        for key in TEST_METRICS:
            values = [m.get(key) for m in per_label if m.get(key) is not None]
            cells.append(float(np.mean(values)) if values else None)
        rows.append([case["case_id"], *cells])
    return sorted(rows, key=lambda r: (not math.isfinite(dice[r[0]]), dice[r[0]], r[0]))


def test_section(metrics: dict[str, Any] | None, where: str) -> Section:
    """Per-case test metrics, worst Dice first, under summary rows (mean, median, std)."""
    if metrics is None:
        return Section("test", "Test metrics", not_available(f"Test metrics ({where})"))
    rows = case_metric_rows(metrics)
    summary = [
        [label, *[(metrics.get(key) or {}).get(k) for k in TEST_METRICS]]
        for key, label in SUMMARY_ROWS.items()
    ]
    body = table(
        ["case", *TEST_METRICS], summary + rows, ["summary"] * len(summary) + [""] * len(rows)
    )
    note = (
        f"<p class='note'>{len(rows)} cases, worst Dice first; convention "
        f"{esc(metrics.get('convention', 'n/a'))}; n/a: undefined (one mask empty).</p>"
    )
    return Section("test", "Test metrics", note + body)
