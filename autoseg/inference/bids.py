"""Predictions as a BIDS derivative dataset (``autoseg_predict --bids-out DIR``).

Per case, named by the BIDS entities of its source (:mod:`autoseg.data.sources`):

- ``sub-X/ses-Y/anat/sub-X_ses-Y_space-S_desc-lesion_mask.nii.gz``: the label map, uint8,
  header as predicted (the input's grid);
- ``..._desc-lesion_probseg.nii.gz`` when probabilities were saved: the calibrated
  foreground probability ``1 - p(background)``, float32;
- a JSON sidecar beside each with ``Type`` (masks), ``Sources`` and ``SpatialReference``
  (BIDS URIs ``bids:raw:<path>`` into the source dataset when it is known, else paths),
  and ``GeneratedBy``: the provenance (autoseg version, dataset, configurations, folds,
  plans ids, checkpoint SHA-256, TTA, postprocessing, temperatures, command line).

Every entity of the source name is kept (``acq``, ``run``, ``rec`` ...); ``space`` is the
source's own (``space-MNI152NLin2009aSym`` for ATLAS) or ``orig`` for native-space data
(ISLES'22), so challenge graders that match by subject and session find each case. The
root holds ``dataset_description.json`` (``DatasetType: derivative``, ``GeneratedBy``,
``DatasetLinks.raw``); :func:`autoseg.data.bids.derivative_problems` checks the result.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import autoseg
from autoseg.core.atomic import atomic_path, write_json
from autoseg.core.errors import InvalidInputError
from autoseg.data.bids import DESCRIPTION_FILE, BidsName, sidecar_path, subject_folder
from autoseg.data.io import read_volume, write_label, write_volume
from autoseg.data.prediction_files import read_probabilities
from autoseg.data.sources import CaseSource

BIDS_VERSION = "1.9.0"
DESC = "lesion"
NATIVE_SPACE = "orig"
NIFTI = ".nii.gz"
# The GeneratedBy keys every sidecar of a model's prediction holds.
MODEL_PROVENANCE = ("Name", "Version", "CommandLine", "dataset", "configurations", "folds",
                    "plans_id", "checkpoint", "checkpoint_sha256", "tta", "postprocessing",
                    "temperature")  # fmt: skip
BASE_PROVENANCE = ("Name", "Version", "CommandLine")


@dataclass(frozen=True)
class Provenance:
    """What produced the derivative (the sidecars' ``GeneratedBy`` object).

    Attributes:
        command_line: the command as typed (the CLI passes it; library code never reads
            ``sys.argv``).
        model: per model facts (dataset, configurations, folds, plans_id, checkpoint,
            checkpoint_sha256, tta, postprocessing, temperature); empty for derivatives
            written by ``autoseg_evaluate`` from existing label maps.
    """

    command_line: str = ""
    model: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"Name": "autoseg", "Version": autoseg.__version__,
                "CommandLine": self.command_line, **self.model}  # fmt: skip


@dataclass(frozen=True)
class DerivativeCase:
    """One case to write: its BIDS origin and its prediction files.

    Attributes:
        source: entities and source files of the case.
        labels: the predicted label map.
        probabilities: the ``<case>.npz`` when probabilities were saved, else None.
        inputs: the input image files (``Sources`` when the BIDS source is unknown).
    """

    source: CaseSource
    labels: Path
    probabilities: Path | None = None
    inputs: tuple[Path, ...] = ()


def derivative_name(source: CaseSource, suffix: str) -> BidsName:
    """``sub-X[_ses-Y][_...]_space-S_desc-lesion_<suffix>.nii.gz`` of a case."""
    entities = tuple((k, v) for k, v in source.entities.items() if k not in ("space", "desc"))
    space = source.entities.get("space", NATIVE_SPACE)
    return BidsName(entities, suffix, NIFTI).with_entities(suffix, NIFTI, space=space, desc=DESC)


def derivative_paths(root: Path, source: CaseSource) -> dict[str, Path]:
    """``{"mask": path, "probseg": path}`` of a case under the derivative root."""
    folder = Path(root) / subject_folder(source.entities)
    return {suffix: folder / derivative_name(source, suffix).name for suffix in ("mask", "probseg")}


def _sources(case: DerivativeCase, linked: bool) -> list[str]:
    if linked and case.source.files:
        return case.source.source_uris
    paths = case.source.source_paths if case.source.files else list(case.inputs)
    return [str(p) for p in paths] or [str(case.labels)]


def _sidecar(case: DerivativeCase, kind: str, provenance: Provenance, linked: bool) -> dict:
    sources = _sources(case, linked)
    payload: dict[str, Any] = {
        "Description": "Stroke lesion mask predicted by autoseg (0 background, 1.. lesion labels)"
        if kind == "mask"
        else "Calibrated foreground probability 1 - p(background) predicted by autoseg",
        "Sources": sources,
        "SpatialReference": sources[0],
        "GeneratedBy": provenance.to_json(),
    }
    if kind == "mask":
        payload["Type"] = "Lesion"
    return payload


def write_case(
    root: Path, case: DerivativeCase, provenance: Provenance, linked: bool
) -> list[Path]:
    """Write one case's mask (and probseg) with their sidecars; returns the image paths."""
    paths = derivative_paths(root, case.source)
    if case.labels.name.endswith(NIFTI):
        with atomic_path(paths["mask"]) as temp:  # byte copy: the header stays exact
            shutil.copyfile(case.labels, temp)
    else:
        labels, meta = read_volume(case.labels)
        write_label(paths["mask"], labels, meta)
    written = [paths["mask"]]
    if case.probabilities is not None:
        _, meta = read_volume(case.labels)
        foreground = 1.0 - read_probabilities(case.probabilities)[0].astype(np.float32)
        write_volume(paths["probseg"], foreground, meta, np.float32)
        written.append(paths["probseg"])
    for path in written:
        kind = "mask" if path == paths["mask"] else "probseg"
        write_json(sidecar_path(path), _sidecar(case, kind, provenance, linked))
    return written


def duplicate_names(cases: Sequence[DerivativeCase]) -> list[str]:
    """One line per derivative name that two cases would both be written to."""
    seen: dict[str, str] = {}
    problems = []
    for case in cases:
        name = derivative_name(case.source, "mask").name
        if name in seen:
            problems.append(f"cases {seen[name]} and {case.source.case_id} map to one BIDS "
                            f"name {name} (give them distinct sub/ses entities)")  # fmt: skip
        seen.setdefault(name, case.source.case_id)
    return problems


def raw_link(sources: Sequence[CaseSource]) -> str | None:
    """The one BIDS root all sources share (``DatasetLinks.raw``), or None."""
    roots = {s.bids_root for s in sources if s.files and s.bids_root}
    return roots.pop() if len(roots) == 1 and all(s.files for s in sources) else None


def write_description(root: Path, provenance: Provenance, raw_root: str | None) -> Path:
    """``dataset_description.json`` of the derivative dataset."""
    payload: dict[str, Any] = {
        "Name": "autoseg stroke lesion segmentation",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "autoseg",
                "Version": autoseg.__version__,
                "Description": "Self-configuring stroke lesion segmentation; masks, "
                "calibrated probabilities and lesion tables",
            }
        ],
    }
    if raw_root is not None:
        payload["DatasetLinks"] = {"raw": Path(raw_root).resolve().as_uri()}
        payload["SourceDatasets"] = [{"URL": Path(raw_root).resolve().as_uri()}]
    write_json(Path(root) / DESCRIPTION_FILE, payload)
    return Path(root) / DESCRIPTION_FILE


def write_derivatives(
    root: str | Path, cases: Sequence[DerivativeCase], provenance: Provenance
) -> list[Path]:
    """Write every case and the dataset description (see the module docstring).

    Returns:
        The image files written.
    """
    root = Path(root)
    clashes = duplicate_names(cases)
    if clashes:
        raise InvalidInputError(clashes)
    link = raw_link([case.source for case in cases])
    written = [p for case in cases for p in write_case(root, case, provenance, link is not None)]
    write_description(root, provenance, link)
    return written
