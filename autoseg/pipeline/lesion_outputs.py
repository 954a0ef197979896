"""What a prediction run leaves for the researcher: lesion tables and BIDS derivatives.

After ``autoseg_predict`` (and ``autoseg_evaluate --lesion-tables/--bids-out``), every
case of the input set whose label map exists is measured once
(:mod:`autoseg.evaluation.lesion_files`) and the tables are written beside the
predictions and, with ``--bids-out``, at the root of the derivative dataset, whose masks
and probability maps :mod:`autoseg.inference.bids` writes. Each case's subject and
session come from ``case_sources.json`` (written at conversion, found beside the input
folder, or by ``--source isles22``), else from the case id
(:func:`autoseg.data.sources.guessed_source`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoseg.data.sources import CaseSource, guessed_source
from autoseg.evaluation.lesion_files import (
    Atlas,
    LesionCase,
    label_folder_cases,
    lesion_tables,
    write_lesion_tables,
)
from autoseg.evaluation.lesions import get_convention
from autoseg.inference.bids import DerivativeCase, Provenance, write_derivatives
from autoseg.inference.model import TrainedModel, fold_json


@dataclass(frozen=True)
class LesionOutputs:
    """Where lesion tables and derivatives go and how lesions are counted.

    Attributes:
        bids_out: the derivative dataset folder (None: tables beside the predictions only).
        convention: ``isles22`` (26-connected lesions) or ``atlas`` (6-connected); None
            takes find_best's (inference.json), else ``isles22``.
        atlas: a label atlas for regional lesion load (``--atlas``/``--atlas-names``).
        command_line: the command as typed, for the provenance.
    """

    bids_out: Path | None = None
    convention: str | None = None
    atlas: Atlas | None = None
    command_line: str = ""


def case_sources(
    case_ids: Sequence[str], recorded: Mapping[str, CaseSource]
) -> dict[str, CaseSource]:
    """The BIDS origin of every case: recorded at conversion, else guessed from its id."""
    return {c: recorded.get(c) or guessed_source(c) for c in case_ids}


def _identity(case: LesionCase, source: CaseSource, image: Path | None) -> LesionCase:
    session = source.entities.get("ses")
    return LesionCase(case.case, case.labels, image, case.probabilities, case.disagreement,
                      f"sub-{source.entities['sub']}", f"ses-{session}" if session else None,
                      source.entities.get("space"))  # fmt: skip


def identified(
    cases: Sequence[LesionCase], sources: Mapping[str, CaseSource], images: Mapping[str, Path]
) -> list[LesionCase]:
    """The cases with their subject/session and brain image filled in."""
    return [_identity(c, sources[c.case], images.get(c.case)) for c in cases]


def measured_cases(
    folder: Path,
    inputs: Mapping[str, Sequence[Path]],
    ending: str,
    sources: Mapping[str, CaseSource],
) -> list[LesionCase]:
    """Lesion cases of the predictions that exist in ``folder``, with identity and image."""
    present = [c for c in sorted(inputs) if (folder / f"{c}{ending}").is_file()]
    found = label_folder_cases(folder, present, ending)
    return [_identity(c, sources[c.case], (list(inputs[c.case]) or [None])[0]) for c in found]


def model_provenance(
    models: Sequence[TrainedModel], post: dict[str, Any], settings: dict[str, Any], dataset: str
) -> dict[str, Any]:
    """The model half of the sidecars' ``GeneratedBy`` object."""
    return {
        "dataset": dataset,
        "configurations": [m.configuration for m in models],
        "folds": {m.configuration: [fold_json(f) for f in m.folds] for m in models},
        "plans_id": {m.configuration: m.plans_id for m in models},
        "checkpoint": models[0].checkpoint,
        "checkpoint_sha256": {
            m.configuration: dict(zip(m.folds, m.checkpoint_sha256, strict=False)) for m in models
        },
        "tta": bool(settings.get("tta", True)),
        "step": settings.get("step", models[0].settings.step),
        "postprocessing": dict(post),
        "temperature": {m.configuration: m.settings.temperature for m in models},
    }


def write_lesion_outputs(
    folder: Path,
    cases: list[LesionCase],
    sources: Mapping[str, CaseSource],
    options: LesionOutputs,
    model: dict[str, Any] | None = None,
    prefix: str = "",
) -> None:
    """Measure the cases, write ``<prefix>lesions.tsv`` / ``<prefix>cases.tsv`` into
    ``folder`` and, with ``bids_out``, the derivative dataset (masks, probabilities,
    sidecars, description, and the same tables at its root)."""
    connectivity = get_convention(options.convention or "isles22").connectivity_3d
    measured = lesion_tables(folder, cases, connectivity, options.atlas, prefix)
    if options.bids_out is None:
        return
    derivatives = [
        DerivativeCase(sources[c.case], c.labels, c.probabilities,
                       tuple(sources[c.case].source_paths) or ((c.image,) if c.image else ()))
        for c in cases
    ]  # fmt: skip
    write_derivatives(options.bids_out, derivatives, Provenance(options.command_line, model or {}))
    write_lesion_tables(options.bids_out, cases, measured)
