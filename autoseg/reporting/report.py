"""``autoseg_report``: one self-contained HTML page per dataset (DESIGN §1, §9).

The page gathers every stage's output: fingerprint, plans, training curves, the
cross-validation table, test metrics and per-case overlays, worst first. It has no
scripts and no external references (images are inline PNG data URIs), so it can be
mailed to a colleague as one file.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path

import autoseg
from autoseg.core.atomic import atomic_path
from autoseg.core.paths import ensure_writable_file
from autoseg.core.run_layout import RunLayout
from autoseg.core.workspace import Workspace
from autoseg.reporting.cases import cases_section
from autoseg.reporting.collect import ReportInputs, case_dice, collect_inputs
from autoseg.reporting.html import Section, page
from autoseg.reporting.lesion_table import collect_lesion_tables, lesion_table_section
from autoseg.reporting.sections import (
    cv_section,
    fingerprint_section,
    plans_section,
    test_section,
    training_section,
)


def report_sections(inputs: ReportInputs, max_cases: int) -> list[Section]:
    """All sections in reading order: data, plans, training, CV, test, lesions, cases."""
    dice_by_case = case_dice(inputs.metrics) if inputs.metrics is not None else None
    return [
        fingerprint_section(inputs.fingerprint),
        plans_section(inputs.plans),
        training_section(inputs.training_logs),
        cv_section(inputs.find_best),
        test_section(inputs.metrics, str(inputs.metrics_path)),
        lesion_table_section(inputs.lesion_tables),
        cases_section(inputs.cases, dice_by_case, max_cases),
    ]


def render_report(inputs: ReportInputs, max_cases: int = 20) -> str:
    """The report's HTML text for already collected inputs."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    subtitle = f"generated {stamp} by autoseg {autoseg.__version__}"
    return page(f"autoseg report: {inputs.dataset}", subtitle, report_sections(inputs, max_cases))


def write_report(
    workspace: Workspace,
    dataset_name: str,
    output_path: str | os.PathLike | None = None,
    metrics_path: str | os.PathLike | None = None,
    images_dir: str | os.PathLike | None = None,
    predictions_dir: str | os.PathLike | None = None,
    references_dir: str | os.PathLike | None = None,
    max_cases: int = 20,
) -> Path:
    """Write the dataset's HTML report (what ``autoseg_report -d NAME`` runs), atomically.

    Args:
        workspace: the raw / preprocessed / results roots.
        dataset_name: dataset name (``ATLAS``, ``Dataset012_Foo``, ``12``...).
        output_path: where to write; default ``results/<NAME>/report.html``.
        metrics_path: test metrics summary from ``autoseg_evaluate``; default
            ``results/<NAME>/test/metrics.json``.
        images_dir: images for the overlays; default the raw ``imagesTs`` when there is a
            ``labelsTs``, else ``imagesTs`` or ``imagesTr``.
        predictions_dir: predicted label maps (with optional ``<case>_uncertainty`` volumes
            and ``<case>_lesions.json``); default ``results/<NAME>/test/predictions``.
        references_dir: reference label maps; default raw ``labelsTs``, else ``labelsTr``.
        max_cases: how many of the worst cases get overlays.

    Returns:
        The written HTML path.

    Raises:
        InvalidInputError: no fingerprint or plans yet, or an unreadable input.
    """
    if output_path is not None:
        ensure_writable_file(output_path, "report")
    inputs = collect_inputs(
        workspace,
        dataset_name,
        None if metrics_path is None else Path(metrics_path),
        *(None if p is None else Path(p) for p in (images_dir, predictions_dir, references_dir)),
    )
    inputs = dataclasses.replace(inputs, lesion_tables=collect_lesion_tables(inputs.cases))
    output = ensure_writable_file(
        output_path or RunLayout(workspace, inputs.dataset).report, "report"
    )
    text = render_report(inputs, max_cases)
    with atomic_path(output) as temp:
        temp.write_text(text, encoding="utf-8")
    return output
