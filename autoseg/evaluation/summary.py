"""Aggregate per-case metrics into summary.json and a per-case CSV.

Statistics skip NaN values (a distance is NaN when exactly one mask is empty) and
``n_finite`` says how many cases each statistic rests on; a statistic with no finite value
is written as JSON ``null``. ``std`` is the population standard deviation (ddof = 0).
``mean_nonempty_reference`` averages only cases whose reference has the label, so cases
where an empty prediction scores a free Dice of 1.0 do not flatter the result.

With several labels, each label has its own statistics under ``per_label``; the top-level
``mean``/``median``/``std``/``n_finite`` are over cases of each case's mean across labels,
and the top-level ``mean_nonempty_reference`` is the mean across labels of each label's
value. With one label the top level equals that label's statistics.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.core.atomic import atomic_path
from autoseg.evaluation.metrics import METRIC_KEYS


@dataclass(frozen=True)
class CaseResult:
    """Metrics of one case, per label, with the voxel counts that decide emptiness."""

    case_id: str
    reference_file: str
    prediction_file: str
    metrics: dict[int, dict[str, float]]
    reference_voxels: dict[int, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "reference_file": self.reference_file,
            "prediction_file": self.prediction_file,
            "metrics": {str(k): _json_metrics(v) for k, v in self.metrics.items()},
            "reference_voxels": {str(k): v for k, v in self.reference_voxels.items()},
        }


def _json_number(value: float | None) -> float | None:
    """JSON has no NaN: undefined values become null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _json_metrics(metrics: dict[str, float]) -> dict[str, float | None]:
    return {key: _json_number(metrics[key]) for key in METRIC_KEYS}


def _statistic(values: np.ndarray, name: str) -> float | None:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    return float({"mean": np.mean, "median": np.median, "std": np.std}[name](finite))


def statistics(rows: Sequence[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """``mean``, ``median``, ``std`` and ``n_finite`` per metric over the given rows."""
    table = {key: np.array([row[key] for row in rows], dtype=np.float64) for key in METRIC_KEYS}
    summary: dict[str, dict[str, Any]] = {
        name: {key: _statistic(table[key], name) for key in METRIC_KEYS}
        for name in ("mean", "median", "std")
    }
    summary["n_finite"] = {key: int(np.isfinite(table[key]).sum()) for key in METRIC_KEYS}
    return summary


def label_summary(results: Sequence[CaseResult], label: int) -> dict[str, Any]:
    """Statistics of one label over all cases, plus the mean over non-empty references."""
    rows = [result.metrics[label] for result in results]
    summary = statistics(rows)
    nonempty = [r.metrics[label] for r in results if r.reference_voxels.get(label, 0) > 0]
    summary["mean_nonempty_reference"] = statistics(nonempty)["mean"] if nonempty else None
    summary["num_nonempty_reference"] = len(nonempty)
    return summary


def _mean_over_labels(per_label: dict[int, dict[str, Any]], key: str) -> float | None:
    values = [s["mean_nonempty_reference"] for s in per_label.values()]
    finite = [v[key] for v in values if v is not None and v[key] is not None]
    return float(np.mean(finite)) if finite else None


def case_label_mean(result: CaseResult) -> dict[str, float]:
    """One case's metrics averaged across its labels (NaN-skipping; NaN if all are NaN)."""
    averaged = {}
    for key in METRIC_KEYS:
        values = np.array([m[key] for m in result.metrics.values()], dtype=np.float64)
        finite = values[np.isfinite(values)]
        averaged[key] = float(finite.mean()) if finite.size else float("nan")
    return averaged


def summarise(results: Sequence[CaseResult], labels: Sequence[int]) -> dict[str, Any]:
    """The summary.json body: top-level statistics, ``per_label`` and ``cases``."""
    per_label = {label: label_summary(results, label) for label in labels}
    summary = statistics([case_label_mean(result) for result in results])
    summary["mean_nonempty_reference"] = {
        key: _mean_over_labels(per_label, key) for key in METRIC_KEYS
    }
    summary["per_label"] = {str(label): value for label, value in per_label.items()}
    summary["cases"] = [result.to_json() for result in results]
    summary["num_cases"] = len(results)
    summary["labels"] = list(labels)
    return summary


def write_case_csv(path: Path, results: Sequence[CaseResult]) -> None:
    """One row per case and label, atomically; NaN is written as ``nan``."""
    header = ["case_id", "label", *METRIC_KEYS, "reference_voxels"]
    with atomic_path(path) as temp, temp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for result in results:
            for label, metrics in result.metrics.items():
                values = [repr(float(metrics[key])) for key in METRIC_KEYS]
                voxels = result.reference_voxels.get(label, 0)
                writer.writerow([result.case_id, label, *values, voxels])
