"""``autoseg_predict``: trained folds (or a shared model zip) applied to a folder of images.

Which model: ``-c/-f`` when given; else ``results/<NAME>/inference.json`` written by
``autoseg_find_best`` (configurations, folds, postprocessing, checkpoint); else the plans'
``recommended_configuration`` with all its trained folds; or ``-m model.zip``, whose
contract carries the same choice. One configuration runs through the overlapped folder
predictor; several are each predicted with probabilities into a temporary folder (each
at its own spacing: saved probabilities are in the input grid, so they average voxel by
voxel) and then ensembled with :func:`autoseg.inference.ensemble.ensemble_folders`.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoseg.core.device import resolve_device
from autoseg.core.errors import InvalidInputError
from autoseg.core.paths import ensure_writable_dir
from autoseg.core.run_layout import RunLayout
from autoseg.core.workspace import Workspace
from autoseg.data.convert.isles22 import CHANNELS as ISLES_CHANNELS
from autoseg.data.io import file_ending
from autoseg.data.sources import CaseSource, find_case_sources
from autoseg.inference.choice import calibration_temperatures, read_inference_choice, resolve_choice
from autoseg.inference.ensemble import ensemble_folders
from autoseg.inference.folder_prediction import pending_cases, predict_folder, select_part
from autoseg.inference.inputs import InputCase, discover_cases, verify_inputs
from autoseg.inference.model import TrainedModel, calibrated
from autoseg.inference.model_zip import load_model_zip
from autoseg.inference.uncertainty import MemberGroup, predict_folder_with_uncertainty
from autoseg.pipeline.lesion_outputs import (
    LesionOutputs,
    case_sources,
    measured_cases,
    model_provenance,
    write_lesion_outputs,
)

SOURCES = ("png-slices", "npy", "isles22")


@dataclass(frozen=True)
class PredictOptions:
    """How ``autoseg_predict`` predicts: which model, the window, the outputs, the inputs.

    Attributes:
        configurations: configurations to ensemble (``-c``); None: inference.json or the
            recommended configuration.
        folds: folds (``-f``); None: inference.json's, else every trained fold.
        model_zip: a model exported by ``autoseg_export`` (``-m``); no workspace needed.
        step: sliding-window step override (a fraction of the patch, in (0, 1]).
        disable_tta: no mirroring.
        amp: autocast the networks (``--amp``; see ``InferenceSettings.amp``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
        save_probabilities: also write probabilities (to ensemble later).
        save_uncertainty: also write the uncertainty outputs.
        overwrite: redo finished cases.
        resume: skip finished cases (``--continue``).
        num_parts: split the input across this many workers ...
        part_id: ... and predict this part.
        checkpoint: ``final``/``best``; None: inference.json's choice, else ``final``.
        source: ``png-slices``, ``npy`` or ``isles22`` (a BIDS tree) to convert the input
            first.
        spacing: ``(z, y, x)`` mm for sources without one.
        progress: show progress bars.
        lesion_outputs: BIDS folder, lesion convention, atlas and command line for the
            tables and derivatives (None: tables beside the predictions only).
        calibrate: apply find_best's temperatures (``--no-calibration`` turns it off).
        postprocess: apply the plans' size rule and find_best's (or the model zip's)
            postprocessing (``--no-postprocessing`` keeps every component the argmax gives).
    """

    configurations: Sequence[str] | None = None
    folds: Sequence[int | str] | None = None
    model_zip: str | os.PathLike | None = None
    step: float | None = None
    disable_tta: bool = False
    amp: bool = False
    device: str = "auto"
    save_probabilities: bool = False
    save_uncertainty: bool = False
    overwrite: bool = False
    resume: bool = False
    num_parts: int = 1
    part_id: int = 0
    checkpoint: str | None = None
    source: str | None = None
    spacing: Sequence[float] | None = None
    progress: bool = False
    lesion_outputs: LesionOutputs | None = None
    calibrate: bool = True
    postprocess: bool = True


DEFAULT_PREDICT_OPTIONS = PredictOptions()


def load_models(
    workspace: Workspace | None, dataset: str | None, options: PredictOptions
) -> tuple[list[TrainedModel], dict[str, Any]]:
    """The models to run (calibrated with find_best's temperatures unless
    ``options.calibrate`` is False) and the postprocessing of their ensemble (none when
    ``options.postprocess`` is False)."""
    models, post = _models_and_postprocessing(workspace, dataset, options)
    return models, post if options.postprocess else {}


def _models_and_postprocessing(
    workspace: Workspace | None, dataset: str | None, options: PredictOptions
) -> tuple[list[TrainedModel], dict[str, Any]]:
    configurations, device = options.configurations, options.device
    if options.model_zip is not None:
        return load_model_zip(options.model_zip, device, options.calibrate, configurations)
    if workspace is None or dataset is None:
        raise InvalidInputError("give a dataset (-d NAME) or a model zip (-m model.zip)")
    results = RunLayout.of_results(workspace, dataset).results
    names, folds, post, checkpoint = resolve_choice(
        results, configurations, options.folds, options.checkpoint
    )
    models = [TrainedModel.from_folder(results / n, folds, checkpoint, device) for n in names]
    temperatures = calibration_temperatures(results) if options.calibrate else {}
    return [calibrated(m, temperatures.get(m.configuration, 1.0)) for m in models], post


def source_channels(source: str, model: TrainedModel) -> list[str] | None:
    """The converter channels a BIDS source must deliver: the model's, in its order."""
    if source != "isles22":
        return None
    names = [model.channel_names[str(i)].lower() for i in range(model.num_channels)]
    unknown = [n for n in names if n not in ISLES_CHANNELS]
    if unknown:
        raise InvalidInputError(
            f"{model.source}: channels {unknown} are not ISLES'22 channels "
            f"({', '.join(ISLES_CHANNELS)}); --source isles22 cannot supply them"
        )
    return names


def convert_inputs(
    input_dir: Path,
    source: str,
    spacing: Sequence[float] | None,
    tmp: Path,
    channels: Sequence[str] | None = None,
) -> tuple[Path, dict[str, CaseSource]]:
    """PNG slices / npy arrays / an ISLES'22 BIDS tree as a folder of NIfTI inputs (the
    converters' readers), and the BIDS origin of each case the converter recorded.

    Predictions are written in the converted NIfTI geometry (the converter's stated
    orientation convention and spacing; for ISLES'22 the DWI grid).
    """
    from autoseg.data.convert import convert

    if source not in SOURCES:
        raise InvalidInputError(f"--source {source}: choose one of {', '.join(SOURCES)}")
    converted = tmp / "converted"
    convert(source, input_dir, converted, spacing_mm=spacing, progress=False, channels=channels)
    inputs = tmp / "inputs"
    inputs.mkdir()
    for folder in (converted / "imagesTr", converted / "imagesTs"):
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            os.symlink(path.resolve(), inputs / path.name)
    return inputs, find_case_sources(converted)


def _option_problems(options: PredictOptions) -> list[str]:
    """Flags out of range, found before any model is loaded (bad usage, exit 2)."""
    step, num_parts, part_id = options.step, options.num_parts, options.part_id
    problems = []
    if step is not None and not 0 < step <= 1:
        problems.append(f"--step {step}: must lie in (0, 1] (a fraction of the patch)")
    if num_parts < 1:
        problems.append(f"--num-parts {num_parts}: must be at least 1")
    elif not 0 <= part_id < num_parts:
        problems.append(
            f"--part-id {part_id}: must lie in 0..{num_parts - 1} (--num-parts {num_parts})"
        )
    return problems


def _check_models(models: Sequence[TrainedModel]) -> None:
    """Members of one ensemble must agree on channels and classes."""
    first = models[0]
    problems = [
        f"{m.source}: {m.num_channels} channels / {m.num_classes} classes, but "
        f"{first.source} has {first.num_channels} / {first.num_classes}"
        for m in models[1:]
        if (m.num_channels, m.num_classes) != (first.num_channels, first.num_classes)
    ]
    if problems:
        raise InvalidInputError(problems)


def _pending_cases(
    cases: list[InputCase], output_dir: Path, ending: str, options: PredictOptions
) -> list[InputCase]:
    """This part's cases whose outputs are not finished (or all of them with overwrite)."""
    cases = select_part(cases, options.num_parts, options.part_id)
    jobs = pending_cases(cases, output_dir, ending, options.save_probabilities,
                         options.overwrite, options.resume)  # fmt: skip
    return [case for case, _ in jobs]


def _ensemble(
    models: Sequence[TrainedModel],
    cases: list[InputCase],
    output_dir: Path,
    ending: str,
    settings_overrides: dict[str, Any],
    post: dict[str, Any],
    save_probabilities: bool,
) -> None:
    """Each configuration into a temporary folder with probabilities, then averaged."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".partial-ensemble-", dir=output_dir) as tmp:
        folders = []
        for model in models:
            folder = Path(tmp) / model.configuration
            settings = model.settings.with_(
                **settings_overrides, save_probabilities=True, postprocessing={}
            )
            predict_folder(cases, folder, model.networks, model.spec, settings,
                           overwrite=True, output_ending=ending, read_data_first=False)  # fmt: skip
            folders.append(folder)
        ensemble_folders(folders, output_dir, save_probabilities=save_probabilities,
                         postprocessing=post, overwrite=True, output_ending=ending)  # fmt: skip


def _settings_overrides(options: PredictOptions, progress: bool) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "progress": progress, "tta": not options.disable_tta, "amp": options.amp,
    }  # fmt: skip
    if options.step is not None:
        overrides["step"] = float(options.step)
    return overrides


def _run(
    models: Sequence[TrainedModel],
    cases: list[InputCase],
    output_dir: Path,
    ending: str,
    post: dict[str, Any],
    options: PredictOptions,
) -> None:
    overrides = _settings_overrides(options, options.progress)
    if options.save_uncertainty:
        groups = [MemberGroup(m.networks, m.spec, m.settings.with_(**overrides)) for m in models]
        predict_folder_with_uncertainty(
            cases, output_dir, groups, post, options.save_probabilities, overwrite=True,
            output_ending=ending, read_data_first=False, progress=options.progress,
        )  # fmt: skip
    elif len(models) == 1:
        model = models[0]
        settings = model.settings.with_(
            **overrides, save_probabilities=options.save_probabilities, postprocessing=post
        )
        predict_folder(cases, output_dir, model.networks, model.spec, settings,
                       overwrite=True, output_ending=ending, read_data_first=False)  # fmt: skip
    else:
        _ensemble(models, cases, output_dir, ending, overrides, post,
                  options.save_probabilities)  # fmt: skip


def predict(
    workspace: Workspace | None,
    dataset: str | None,
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    options: PredictOptions = DEFAULT_PREDICT_OPTIONS,
) -> list[str]:
    """Predict every case of ``input_dir`` into ``output_dir`` (``autoseg_predict``).

    Then every predicted case of the input set (also those finished by earlier runs) is
    measured: ``lesions.tsv`` and ``cases.tsv`` beside the predictions, and with
    ``options.lesion_outputs.bids_out`` the BIDS derivative dataset
    (:mod:`autoseg.pipeline.lesion_outputs`).

    Args:
        workspace: the roots (not needed with ``options.model_zip``).
        dataset: dataset name whose ``results/<NAME>`` holds the model (``-d``).
        input_dir: images: ``<case>_0000.nii.gz`` ... or plain single-channel files
            (NIfTI, MHA, NRRD), or with ``options.source`` PNG-slice / npy folders.
        output_dir: labels ``<case><ending>`` in the input's exact grid and header, plus
            ``<case>.npz``/``.json`` with ``save_probabilities`` and
            ``<case>_uncertainty``/``_disagreement``/``_lesions.json`` with
            ``save_uncertainty`` (see :mod:`autoseg.inference.uncertainty`).
        options: which model and how to predict (:class:`PredictOptions`).

    Returns:
        The ids of the cases predicted by this call.

    Raises:
        InvalidInputError: no model, bad inputs, or finished outputs without
            overwrite/resume.
    """
    problems = _option_problems(options)
    if problems:
        raise InvalidInputError(problems)
    resolve_device(options.device)
    ensure_writable_dir(output_dir, "output folder")
    models, post = load_models(workspace, dataset, options)
    _check_models(models)
    lesion_outputs = _with_convention(options.lesion_outputs or LesionOutputs(), workspace,
                                      dataset, options.model_zip)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="autoseg-inputs-") as tmp:
        folder, recorded = Path(input_dir), find_case_sources(Path(input_dir))
        if options.source is not None:
            channels = source_channels(options.source, models[0])
            folder, recorded = convert_inputs(folder, options.source, options.spacing,
                                              Path(tmp), channels)  # fmt: skip
        cases = discover_cases(folder, models[0].num_channels)
        ending = file_ending(cases[0][1][0])
        pending = _pending_cases(cases, Path(output_dir), ending, options)
        if pending:
            verify_inputs(pending, models[0].num_channels)
            _run(models, pending, Path(output_dir), ending, post, options)
        provenance = model_provenance(models, post, _settings_overrides(options, False),
                                      _dataset_name(models, options.model_zip))  # fmt: skip
        inputs = dict(cases)
        sources = case_sources(list(inputs), recorded)
        measured = measured_cases(Path(output_dir), inputs, ending, sources)
        if measured:
            write_lesion_outputs(Path(output_dir), measured, sources, lesion_outputs, provenance)
    return [case[0] for case in pending]


def _dataset_name(models: Sequence[TrainedModel], model_zip: str | os.PathLike | None) -> str:
    """The trained dataset's name (results/<NAME>/<CONFIG>), or the model zip's."""
    if model_zip is not None:
        return f"model zip {Path(model_zip).name}"
    return models[0].source.parent.name


def _with_convention(
    outputs: LesionOutputs,
    workspace: Workspace | None,
    dataset: str | None,
    model_zip: str | os.PathLike | None,
) -> LesionOutputs:
    """The lesion convention: as given, else find_best's (inference.json), else isles22."""
    if outputs.convention is not None:
        return outputs
    convention = "isles22"
    if model_zip is None and workspace is not None and dataset is not None:
        choice = read_inference_choice(RunLayout.of_results(workspace, dataset).results) or {}
        convention = choice.get("convention") or convention
    return dataclasses.replace(outputs, convention=convention)
