"""The one folder loop of inference: read, predict and write overlap (DESIGN §8).

While case ``i`` runs through the networks on the main thread, a reader thread preprocesses
case ``i + 1`` and a writer thread reverts case ``i - 1`` to its input geometry and writes it
(nibabel/zlib, numpy and scipy release the GIL for most of that work, and torch does while it
computes). At most one case waits on each side, so memory stays at about three cases.
What is predicted and written per case is a :class:`CaseWriter`: :func:`predict_folder`
plugs in the fused network average, ``--save-uncertainty`` its own writer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from autoseg.core.errors import InvalidInputError
from autoseg.data.io import write_label
from autoseg.inference.case_prediction import predict_preprocessed
from autoseg.inference.inputs import InputCase, verify_inputs
from autoseg.inference.outputs import CaseOutputs, case_outputs, select_pending, write_case
from autoseg.inference.postprocess import check_postprocessing, needs_probabilities, postprocess
from autoseg.inference.settings import InferenceSettings
from autoseg.plans.preprocessing import PreprocessingSpec
from autoseg.preprocessing.case import preprocess_case, revert_prediction, revert_probabilities
from autoseg.preprocessing.properties import PreprocessedCase


class CasePredictionError(RuntimeError):
    """Predicting or writing one case failed for a reason other than bad input."""


def select_part(cases: Sequence[InputCase], num_parts: int, part_id: int) -> list[InputCase]:
    """Part ``part_id`` of ``num_parts`` (every ``num_parts``-th case by sorted id).

    The parts of ``0 .. num_parts - 1`` partition the cases, so workers on several GPUs
    or machines can share one input folder without coordination.
    """
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise ValueError(f"need 0 <= part_id < num_parts, got part {part_id} of {num_parts}")
    return sorted(cases, key=lambda case: case[0])[part_id::num_parts]


class CaseWriter(Protocol):
    """How the folder loop reads, predicts and writes one case.

    The loop (:func:`run_folder`) overlaps the three: ``load`` runs on a reader thread for
    the next case, ``predict`` on the calling thread, ``write`` on a writer thread for the
    previous case. :class:`NetworkWriter` is the usual one (labels, probabilities);
    :class:`~autoseg.inference.uncertainty.UncertaintyWriter` adds the uncertainty maps.
    """

    num_channels: int

    def start(self) -> None:
        """Once, before the first case (e.g. move networks to the device)."""

    def load(self, case: InputCase) -> Any:
        """Read and preprocess a case (reader thread)."""

    def predict(self, loaded: Any) -> Any:
        """Run the networks on what :meth:`load` returned (calling thread)."""

    def write(self, outputs: CaseOutputs, loaded: Any, predicted: Any) -> None:
        """Revert to the input grid and write every output of the case (writer thread)."""


def _load(case: InputCase, spec: PreprocessingSpec) -> PreprocessedCase:
    """Read and preprocess one case (reader thread); non-finite voxels name the files."""
    case_id, files = case
    loaded = preprocess_case(files, None, spec, case_id)
    if not np.isfinite(loaded.data).all():
        names = ", ".join(str(f) for f in files)
        raise InvalidInputError(f"{names}: NaN or Inf voxels in case {case_id}")
    return loaded


@dataclass
class NetworkWriter:
    """Every network's probabilities averaged (fused), written as labels and, when asked,
    probabilities (see :mod:`autoseg.inference.outputs`)."""

    networks: Sequence[Callable]
    spec: PreprocessingSpec
    settings: InferenceSettings

    @property
    def num_channels(self) -> int:
        return self.spec.num_channels

    def start(self) -> None:
        self.networks = _prepare_networks(self.networks, self.settings.device)

    def load(self, case: InputCase) -> PreprocessedCase:
        return _load(case, self.spec)

    def predict(self, loaded: PreprocessedCase) -> np.ndarray:
        case_id = loaded.properties.case_id
        try:
            return predict_preprocessed(self.networks, loaded, self.settings)
        except InvalidInputError:
            raise
        except Exception as error:
            raise CasePredictionError(f"case {case_id}: prediction failed ({error})") from error

    def write(
        self, outputs: CaseOutputs, loaded: PreprocessedCase, probabilities: np.ndarray
    ) -> None:
        _write(outputs, probabilities, loaded, self.settings)


def _write(
    outputs: CaseOutputs,
    probabilities: np.ndarray,
    loaded: PreprocessedCase,
    settings: InferenceSettings,
) -> None:
    """Revert to the input grid and write (writer thread).

    Without saved probabilities or a threshold, labels are reverted directly (per-class
    resampling, then argmax), which skips holding K full-resolution float maps.
    """
    properties, post = loaded.properties, settings.postprocessing
    if settings.save_probabilities or needs_probabilities(post):
        original = revert_probabilities(probabilities, properties)
        write_case(outputs, original, properties.meta, post, settings.probability_dtype)
    else:
        labels = revert_prediction(probabilities, properties)
        labels = postprocess(labels, post, spacing_mm=properties.meta.spacing_mm)
        write_label(outputs.labels, labels, properties.meta)


def _result(future: Future, case_id: str, what: str) -> object:
    """A background step's result; failures re-raised naming the case."""
    try:
        return future.result()
    except InvalidInputError:
        raise
    except Exception as error:
        raise CasePredictionError(f"case {case_id}: {what} failed ({error})") from error


def pending_cases(
    cases: Sequence[InputCase],
    output_dir: Path,
    output_ending: str,
    save_probabilities: bool,
    overwrite: bool,
    resume: bool,
) -> list[tuple[InputCase, CaseOutputs]]:
    """The cases whose outputs are not finished (all of them with ``overwrite``), each
    with its output paths; finished outputs without overwrite/resume are an error."""
    by_id = {case[0]: case for case in cases}
    outputs = [
        case_outputs(output_dir, case_id, output_ending, save_probabilities) for case_id in by_id
    ]
    return [(by_id[o.case_id], o) for o in select_pending(outputs, overwrite, resume)]


def _run_pipeline(
    jobs: list[tuple[InputCase, CaseOutputs]], writer: CaseWriter, progress: bool
) -> None:
    """Predict on this thread while the next case is read and the last one written."""
    bar = tqdm(total=len(jobs), unit="case", disable=not progress)
    with (
        ThreadPoolExecutor(1, thread_name_prefix="autoseg-read") as reader,
        ThreadPoolExecutor(1, thread_name_prefix="autoseg-write") as writing_pool,
    ):
        upcoming = reader.submit(writer.load, jobs[0][0])
        writing: tuple[Future, str] | None = None
        for index, ((case_id, _), outputs) in enumerate(jobs):
            loaded = _result(upcoming, case_id, "reading")
            if index + 1 < len(jobs):
                upcoming = reader.submit(writer.load, jobs[index + 1][0])
            bar.set_postfix_str(case_id)
            predicted = writer.predict(loaded)
            if writing is not None:
                _result(*writing, "writing")
            writing = (writing_pool.submit(writer.write, outputs, loaded, predicted), case_id)
            bar.update(1)
        _result(*writing, "writing")
    bar.close()


def run_folder(
    input_cases: Sequence[InputCase],
    output_dir: str | os.PathLike,
    writer: CaseWriter,
    save_probabilities: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    num_parts: int = 1,
    part_id: int = 0,
    output_ending: str = ".nii.gz",
    read_data_first: bool = True,
    progress: bool = False,
) -> list[str]:
    """The one folder loop: pick this part's pending cases, check them, run ``writer``.

    Args:
        input_cases: ``[(case_id, [channel files])]``.
        output_dir: where outputs go (created when missing).
        writer: reads, predicts and writes a case (:class:`CaseWriter`).
        save_probabilities: the case counts as finished only with its npz and sidecar.
        overwrite: redo cases whose outputs exist.
        resume: skip cases whose outputs exist (``--continue``); without either flag,
            existing outputs are an error.
        num_parts: split the cases into this many parts ...
        part_id: ... and predict only this one (0-based).
        output_ending: file ending of the label files (``.nii.gz``, ``.mha``, ``.nrrd``).
        read_data_first: check every voxel of every input before starting (NaN/Inf,
            truncated files); False checks headers only and catches bad voxels per case.
        progress: show a progress bar.

    Returns:
        The ids of the cases predicted by this call.
    """
    cases = select_part(input_cases, num_parts, part_id)
    jobs = pending_cases(cases, Path(output_dir), output_ending, save_probabilities,
                         overwrite, resume)  # fmt: skip
    if not jobs:
        return []
    verify_inputs([case for case, _ in jobs], writer.num_channels, read_data_first)
    writer.start()
    _run_pipeline(jobs, writer, progress)
    return [case[0] for case, _ in jobs]


def predict_folder(
    input_cases: Sequence[InputCase],
    output_dir: str | os.PathLike,
    networks: Sequence[Callable],
    spec: PreprocessingSpec,
    settings: InferenceSettings,
    overwrite: bool = False,
    resume: bool = False,
    num_parts: int = 1,
    part_id: int = 0,
    output_ending: str = ".nii.gz",
    read_data_first: bool = True,
) -> list[str]:
    """Predict cases and write labels (and optionally probabilities) in their input grid.

    Preprocessing is the training path (:func:`autoseg.preprocessing.preprocess_case`), so
    a network never sees input prepared differently from its training data. Outputs are
    described in :mod:`autoseg.inference.outputs`.

    Args:
        input_cases: ``[(case_id, [channel files])]``, e.g. from
            :func:`autoseg.inference.inputs.discover_cases`.
        output_dir: where outputs go (created when missing).
        networks: one callable per fold (``nn.Module`` are moved to ``settings.device`` and
            put in eval mode); their probabilities are averaged.
        spec: the configuration's preprocessing spec.
        settings: sliding window, TTA, device, outputs and postprocessing.
        overwrite, resume, num_parts, part_id, output_ending, read_data_first: as in
            :func:`run_folder`.

    Returns:
        The ids of the cases predicted by this call.

    Raises:
        InvalidInputError: bad inputs (all listed, before any work) or existing outputs.
        CasePredictionError: a case failed; finished cases stay, unfinished leave no file.
    """
    check_postprocessing(settings.postprocessing)
    return run_folder(
        input_cases, output_dir, NetworkWriter(networks, spec, settings),
        settings.save_probabilities, overwrite, resume, num_parts, part_id, output_ending,
        read_data_first, settings.progress,
    )  # fmt: skip


def _prepare_networks(networks: Sequence[Callable], device: str) -> list[Callable]:
    """Modules on the device in eval mode (plain callables are used as they are)."""
    return [n.to(device).eval() if isinstance(n, torch.nn.Module) else n for n in networks]
