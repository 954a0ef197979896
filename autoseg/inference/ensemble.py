"""Ensembling of saved probability maps (the core of ``autoseg_ensemble``).

Each input folder holds ``<case>.npz`` probabilities in the original geometry and a
``<case>.json`` sidecar (see :mod:`autoseg.inference.outputs`). Cases are paired by id,
their probabilities averaged (as fold ensembling inside the predictor does), and labels
written in the geometry from the sidecar or from a reference image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from autoseg.core.atomic import is_temporary
from autoseg.core.errors import InvalidInputError
from autoseg.core.paths import ensure_writable_dir
from autoseg.data.io import VOLUME_ENDINGS, read_meta
from autoseg.data.prediction_files import PROBABILITIES_ENDING, SIDECAR_ENDING
from autoseg.data.records import ImageMeta
from autoseg.inference.calibration import rescale_probabilities
from autoseg.inference.outputs import (
    case_outputs,
    read_probabilities,
    read_sidecar,
    select_pending,
    write_case,
    write_probabilities,
)
from autoseg.inference.postprocess import check_postprocessing


def average_probability_files(
    files: Sequence[str | os.PathLike],
    out: str | os.PathLike | None = None,
    dtype: str = "float16",
    temperatures: Sequence[float] | None = None,
) -> np.ndarray:
    """Mean of the ``probabilities`` arrays of several npz files.

    Summed in float32 one file at a time, so memory holds two maps however many files.

    Args:
        files: npz files with ``probabilities (K, Z, Y, X)`` of one case.
        out: optional npz path to write the mean to (atomically, as ``dtype``).
        dtype: npz dtype of ``out``.
        temperatures: one per file: each file's probabilities are first calibrated with
            it (:func:`autoseg.inference.calibration.rescale_probabilities`).

    Returns:
        float32 ``(K, Z, Y, X)``.

    Raises:
        InvalidInputError: unreadable files or shapes differing from the first file's.
    """
    if not files:
        raise ValueError("average_probability_files needs at least one file")
    paths = [Path(f) for f in files]
    scales = list(temperatures) if temperatures is not None else [1.0] * len(paths)
    total = rescale_probabilities(read_probabilities(paths[0]).astype(np.float32), scales[0])
    for path, temperature in zip(paths[1:], scales[1:], strict=True):
        probabilities = read_probabilities(path)
        if probabilities.shape != total.shape:
            raise InvalidInputError(
                f"{path}: probabilities {probabilities.shape} != {total.shape} of {paths[0]}"
            )
        total += rescale_probabilities(probabilities.astype(np.float32), temperature)
    total /= len(paths)
    if out is not None:
        write_probabilities(Path(out), total, dtype)
    return total


def probability_files(folder: Path) -> dict[str, Path]:
    """``{case_id: <case>.npz}`` of a prediction folder (temporary files ignored)."""
    if not folder.is_dir():
        raise InvalidInputError(f"{folder}: prediction folder not found")
    return {
        p.name[: -len(PROBABILITIES_ENDING)]: p
        for p in sorted(folder.glob(f"*{PROBABILITIES_ENDING}"))
        if p.is_file() and not is_temporary(p)
    }


def pair_cases(folders: Sequence[Path]) -> dict[str, list[Path]]:
    """``{case_id: [npz per folder]}`` for the cases of the folders.

    Raises:
        InvalidInputError: a folder without probabilities, or a case missing from some
            folders (one line per folder and case): an ensemble of unequal sets is no
            ensemble.
    """
    found = [probability_files(Path(f)) for f in folders]
    problems = [
        f"{f}: no <case>.npz probabilities (predict with --save-probabilities)"
        for f, files in zip(folders, found, strict=True)
        if not files
    ]
    every = sorted(set().union(*found))
    for folder, files in zip(folders, found, strict=True):
        problems += [f"{folder}: no probabilities for case {c}" for c in every if c not in files]
    if problems:
        raise InvalidInputError(problems)
    return {case_id: [files[case_id] for files in found] for case_id in every}


def case_meta(case_id: str, folders: Sequence[Path], reference_dir: Path | None) -> ImageMeta:
    """Geometry of a case: the first sidecar found, else a reference image's header.

    The reference may be named ``<case><ending>`` (a label or plain image) or
    ``<case>_0000<ending>`` (the nnU-Net input).
    """
    for folder in folders:
        sidecar = Path(folder) / f"{case_id}{SIDECAR_ENDING}"
        if sidecar.is_file():
            return read_sidecar(sidecar)
    if reference_dir is not None:
        for stem in (case_id, f"{case_id}_0000"):
            for ending in VOLUME_ENDINGS:
                if (Path(reference_dir) / f"{stem}{ending}").is_file():
                    return read_meta(Path(reference_dir) / f"{stem}{ending}")
    where = f" or in {reference_dir}" if reference_dir is not None else ""
    raise InvalidInputError(f"{folders[0]}: no {case_id}.json sidecar{where} for case {case_id}")


def _check_geometry(case_id: str, meta: ImageMeta, probabilities: np.ndarray) -> None:
    if tuple(probabilities.shape[1:]) != tuple(meta.shape):
        raise InvalidInputError(
            f"case {case_id}: probabilities {probabilities.shape[1:]} do not match the "
            f"image shape {meta.shape} of its geometry"
        )


def ensemble_folders(
    input_dirs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    reference_dir: str | os.PathLike | None = None,
    save_probabilities: bool = False,
    postprocessing: dict[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    output_ending: str = ".nii.gz",
    probability_dtype: str = "float16",
    progress: bool = False,
    temperatures: Sequence[float] | None = None,
) -> list[str]:
    """Average the probabilities of prediction folders and write labels (``autoseg_ensemble``).

    Args:
        input_dirs: prediction folders written with saved probabilities.
        output_dir: where ``<case><ending>`` (and with ``save_probabilities`` the averaged
            ``<case>.npz`` + ``<case>.json``) go.
        reference_dir: images or labels giving the geometry of cases without a sidecar.
        save_probabilities: also write the averaged probabilities (to ensemble further).
        postprocessing: applied to the labels, see :mod:`autoseg.inference.postprocess`.
        overwrite: redo cases whose outputs exist.
        resume: skip cases whose outputs exist; without either flag they are an error.
        output_ending: ending of the label files.
        probability_dtype: npz dtype of saved probabilities.
        progress: show a progress bar.
        temperatures: one per input folder, to calibrate its probabilities before
            averaging (None: as saved).

    Returns:
        The ids of the cases written.
    """
    ensure_writable_dir(output_dir, "output folder")
    postprocessing = dict(postprocessing or {})
    check_postprocessing(postprocessing)
    folders = [Path(d) for d in input_dirs]
    reference = None if reference_dir is None else Path(reference_dir)
    pairs = pair_cases(folders)
    metas = {case_id: case_meta(case_id, folders, reference) for case_id in pairs}
    outputs = [case_outputs(Path(output_dir), c, output_ending, save_probabilities) for c in pairs]
    pending = select_pending(outputs, overwrite, resume)
    for outputs_of_case in tqdm(pending, unit="case", disable=not progress):
        case_id = outputs_of_case.case_id
        probabilities = average_probability_files(pairs[case_id], temperatures=temperatures)
        _check_geometry(case_id, metas[case_id], probabilities)
        write_case(
            outputs_of_case, probabilities, metas[case_id], postprocessing, probability_dtype
        )
    return [o.case_id for o in pending]
