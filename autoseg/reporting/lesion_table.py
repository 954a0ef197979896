"""The report's lesion table section: per-case and per-lesion rows, and a volume scatter.

Rows come from the ``cases.tsv`` / ``lesions.tsv`` that ``autoseg_predict`` writes beside
its predictions; when they are absent the predictions are measured here the same way
(:mod:`autoseg.evaluation.lesion_files`, ISLES'22 rules). The scatter puts each case's
reference lesion volume against the predicted one (log-log, the identity line drawn), so
systematic over- or under-segmentation and the small-lesion end are seen at once.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from autoseg.data.io import read_volume
from autoseg.evaluation.lesion_columns import CASE_COLUMNS as ALL_CASE
from autoseg.evaluation.lesion_columns import LESION_COLUMNS as ALL_LESION
from autoseg.evaluation.lesion_files import (
    CASES_TSV,
    LESIONS_TSV,
    LesionCase,
    case_row,
    lesion_rows,
    measure_case,
)
from autoseg.evaluation.lesion_table import CaseLesions
from autoseg.reporting.collect import CaseFiles
from autoseg.reporting.figures import figure_uri
from autoseg.reporting.html import Section, esc, image, not_available, table

CASE_COLUMNS = ("case", "participant_id", "lesions", "volume_ml", "largest_lesion_ml",
                "left_volume_ml", "right_volume_ml", "mean_probability")  # fmt: skip
LESION_COLUMNS = ("case", "lesion", "volume_ml", "centroid_x_mm", "centroid_y_mm",
                  "centroid_z_mm", "hemisphere", "mean_probability", "max_probability",
                  "fold_agreement", "region")  # fmt: skip
MAX_LESION_ROWS = 200
ISLES_CONNECTIVITY = 26


@dataclass(frozen=True)
class LesionTables:
    """What the section shows.

    Attributes:
        cases: rows of cases.tsv (column -> text).
        lesions: rows of lesions.tsv.
        volumes: ``(case, reference ml or None, predicted ml)`` per predicted case.
        source: where the rows came from (a folder, or "measured for this report").
    """

    cases: list[dict[str, str]]
    lesions: list[dict[str, str]]
    volumes: list[tuple[str, float | None, float]]
    source: str


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def _measured_rows(cases: list[CaseFiles]) -> tuple[list[dict], list[dict]]:
    """Rows as the predictor writes them, measured from the prediction files."""
    case_rows, lesion_rows_ = [], []
    for files in cases:
        item = LesionCase(files.case_id, files.prediction, files.image)
        measured: CaseLesions = measure_case(item, ISLES_CONNECTIVITY)
        case_rows.append(dict(zip(ALL_CASE, map(_text, case_row(item, measured)), strict=True)))
        lesion_rows_ += [dict(zip(ALL_LESION, map(_text, row), strict=True))
                         for row in lesion_rows(item, measured)]  # fmt: skip
    return case_rows, lesion_rows_


def _text(value: object) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _volume_ml(path: Path) -> float:
    labels, meta = read_volume(path)
    return float(np.count_nonzero(labels)) * float(np.prod(meta.spacing_mm)) / 1000.0


def collect_lesion_tables(cases: list[CaseFiles]) -> LesionTables | None:
    """The section's data for the report's cases (None when there are no predictions)."""
    if not cases:
        return None
    folder = cases[0].prediction.parent
    if (folder / CASES_TSV).is_file() and (folder / LESIONS_TSV).is_file():
        case_rows, lesions = read_tsv(folder / CASES_TSV), read_tsv(folder / LESIONS_TSV)
        source = str(folder)
    else:
        (case_rows, lesions), source = _measured_rows(cases), "measured for this report"
    predicted = {r["case"]: float(r["volume_ml"]) for r in case_rows}
    volumes = [
        (c.case_id, None if c.reference is None else _volume_ml(c.reference),
         predicted.get(c.case_id, _volume_ml(c.prediction)))
        for c in cases
    ]  # fmt: skip
    return LesionTables(case_rows, lesions, volumes, source)


def volume_scatter(volumes: list[tuple[str, float | None, float]]) -> Figure:
    """Reference against predicted lesion volume per case (log-log, identity line)."""
    figure = Figure(figsize=(4.6, 4.2), layout="constrained")
    axes = figure.subplots()
    pairs = [(r, p) for _, r, p in volumes if r is not None]
    floor = 1e-3  # ml: empty volumes drawn on the axis floor rather than dropped
    if pairs:
        ref, pred = (np.maximum(np.array(v, float), floor) for v in zip(*pairs, strict=True))
        axes.scatter(ref, pred, s=22, color="tab:blue", alpha=0.8)
        low = min(ref.min(), pred.min()) / 1.5
        high = max(ref.max(), pred.max()) * 1.5
        axes.plot([low, high], [low, high], "--", color="grey", linewidth=1)
        axes.set_xscale("log")
        axes.set_yscale("log")
        correlation = np.corrcoef(ref, pred)[0, 1] if len(pairs) > 2 else math.nan
        title = f"{len(pairs)} cases"
        if math.isfinite(correlation):
            title += f"; Pearson r {correlation:.2f}"
        axes.set_title(title, fontsize=10)
    axes.set_xlabel("reference lesion volume (ml)")
    axes.set_ylabel("predicted lesion volume (ml)")
    return figure


def _cells(rows: list[dict[str, str]], columns: tuple[str, ...]) -> list[list[str]]:
    return [[row.get(c, "n/a") for c in columns] for row in rows]


def lesion_table_section(tables: LesionTables | None) -> Section:
    """Per-case rows, the volume scatter, and the first lesions of lesions.tsv."""
    if tables is None:
        return Section("lesions", "Lesion table", not_available("Predictions"))
    body = (f"<p class='note'>From {esc(tables.source)}: {len(tables.cases)} cases, "
            f"{len(tables.lesions)} lesions. Columns and units are described in "
            "lesions.json / cases.json beside the tables.</p>")  # fmt: skip
    body += table(list(CASE_COLUMNS), _cells(tables.cases, CASE_COLUMNS))
    if any(reference is not None for _, reference, _ in tables.volumes):
        caption = "Lesion volume per case, reference against prediction (dashed: equal)."
        uri = figure_uri(volume_scatter(tables.volumes))
        body += image(uri, "lesion volume scatter", caption)
    shown = tables.lesions[:MAX_LESION_ROWS]
    body += f"<h3>Lesions ({len(shown)} of {len(tables.lesions)}, largest first per case)</h3>"
    body += table(list(LESION_COLUMNS), _cells(shown, LESION_COLUMNS))
    return Section("lesions", "Lesion table", body)
