"""``autoseg_benchmark``: how fast one planned configuration trains and predicts here.

For each set of speed levers (one, or with ``sweep`` the baseline and every lever toggled
from it, :func:`~autoseg.training.speed.sweep`) a fresh network from the plans is
trained for ``warmup + iterations`` steps twice:

- on the training loader (sampling, augmentation, workers: what ``autoseg_train`` runs),
  timing how long each step waited for its batch;
- on one batch reused, so the step never waits (the device's own speed).

Their difference is the loader bottleneck: ``loader_wait_share`` is the share of a
real-loading step spent waiting for the batch, ``device_busy_share`` the fixed-batch time
over the real-loading time (1.0: the loader keeps up). Warm-up steps (cuDNN autotuning,
compilation, the workers' first batches) are excluded from the medians. Peak memory is
CUDA's ``max_memory_allocated`` per run, or on the CPU the process's peak RSS (which only
grows, so later runs of a sweep include earlier ones), set against the plans'
``memory_estimate_gb``. Then the briefly trained network (or the fold's
``checkpoint_final.pt`` when there is one; speed does not depend on the weights) predicts a
few of the dataset's cases through the whole ``autoseg_predict`` path, with and without
mirroring TTA.
"""

from __future__ import annotations

import gc
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from autoseg.core.atomic import write_json
from autoseg.core.cpu import flushed_denormals
from autoseg.core.device import resolve_device
from autoseg.core.errors import InvalidInputError
from autoseg.core.run_layout import FoldLayout, RunLayout
from autoseg.core.workspace import Workspace
from autoseg.inference.folder_prediction import predict_folder
from autoseg.inference.model import load_network
from autoseg.inference.settings import InferenceSettings
from autoseg.pipeline.fold_data import FoldData, load_fold, result_folder
from autoseg.pipeline.fold_trainer import (
    TrainOptions,
    augments_on_device,
    build_model,
    build_optimisation,
    device_transform,
    is_3d,
    make_batches,
    train_settings,
)
from autoseg.pipeline.validation import input_cases, open_raw
from autoseg.training.batches import Batch
from autoseg.training.speed import (
    DEFAULT_LEVERS,
    SpeedLevers,
    backend_flags,
    lever_status,
    pins_memory,
    precision_name,
    sweep,
)
from autoseg.training.trainer import Trainer

GB = 2**30
SCHEMA = "autoseg-benchmark/1"


@dataclass(frozen=True)
class BenchmarkOptions:
    """What to measure.

    Attributes:
        device: ``auto``, ``cpu``, ``cuda``, ``mps``.
        fold: whose training cases the loader draws from (and whose checkpoint predicts).
        iterations: timed steps per measurement (after ``warmup``).
        warmup: untimed steps first.
        num_workers: loader processes (None: the RAM-aware default of training).
        prediction_cases: cases predicted with and without TTA (0: no prediction).
        levers: the run's levers, or the sweep's baseline.
        sweep: one run per lever toggled from ``levers``.
        sweep_levers: only these levers in the sweep (empty: every lever).
        seed: network initialisation and batches.
        progress: tqdm bars.
    """

    device: str = "auto"
    fold: int | str = 0
    iterations: int = 10
    warmup: int = 2
    num_workers: int | None = None
    prediction_cases: int = 2
    levers: SpeedLevers = DEFAULT_LEVERS
    augment_on: str = "auto"
    sweep: bool = False
    sweep_levers: tuple[str, ...] = ()
    seed: int = 12345
    progress: bool = True

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.warmup < 0 or self.prediction_cases < 0:
            raise InvalidInputError(
                f"--iterations must be >= 1, --warmup and --prediction-cases >= 0 (got "
                f"{self.iterations}, {self.warmup}, {self.prediction_cases})"
            )


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so a wall-clock interval covers the work it timed."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark_trainer(data: FoldData, options: TrainOptions, device: torch.device) -> Trainer:
    """A trainer for the plans' configuration without callbacks or validation (nothing is
    written), built by the training pipeline's own functions."""
    network = build_model(data, options, device)
    loss, optimizer, schedule = build_optimisation(data, network, options, 1)
    schedule.apply(optimizer, 0, 1)
    settings = train_settings(data, "benchmark", options, 1, 1)
    on_device = augments_on_device(options.augment_on, device)
    batches = make_batches(data, network, options, 1, on_device)
    return Trainer(network, loss, optimizer, schedule, batches, [], settings, device,
                   batch_transform=device_transform(on_device))  # fmt: skip


def _timed(steps: int, label: str, progress: bool) -> Iterator[int]:
    return iter(tqdm(range(steps), desc=label, disable=not progress, leave=False))


def time_real_loading(
    trainer: Trainer, steps: int, warmup: int, progress: bool
) -> tuple[list[float], list[float], Batch]:
    """Seconds per step and seconds waited for the batch, on the training loader.

    Returns:
        ``(step_s, wait_s, last_batch)`` over the steps after ``warmup``.
    """
    batches = trainer.batches.for_epoch(0, 0)
    step_s, wait_s, batch = [], [], None
    try:
        for index in _timed(warmup + steps, "real loading", progress):
            start = time.perf_counter()
            batch = next(batches)
            loaded = time.perf_counter()
            trainer.train_step(batch)
            synchronize(trainer.device)
            if index >= warmup:
                step_s.append(time.perf_counter() - start)
                wait_s.append(loaded - start)
    finally:
        trainer.batches.close()
    return step_s, wait_s, batch


def time_fixed_batch(
    trainer: Trainer, batch: Batch, steps: int, warmup: int, progress: bool
) -> list[float]:
    """Seconds per step on one batch reused (still copied to the device every step, as
    the loader's batches are): the step without any wait for data."""
    if pins_memory(trainer.settings.levers, trainer.device):
        batch = {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}
    step_s = []
    for index in _timed(warmup + steps, "fixed batch", progress):
        start = time.perf_counter()
        trainer.train_step(batch)
        synchronize(trainer.device)
        if index >= warmup:
            step_s.append(time.perf_counter() - start)
    return step_s


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float:
    """CUDA's peak allocated memory since the last reset, else the process's peak RSS
    (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / GB
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / GB if sys.platform == "darwin" else rss * 1024 / GB


def memory_source(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated per run"
    return "process peak RSS (getrusage; only grows, so it includes earlier runs)"


def measure_levers(
    data: FoldData, levers: SpeedLevers, device: torch.device, options: BenchmarkOptions
) -> tuple[dict[str, Any], Trainer]:
    """One run: real-loading and fixed-batch medians, shares and peak memory."""
    train_options = TrainOptions(device=device.type, num_workers=options.num_workers,
                                 seed=options.seed, progress=False, levers=levers,
                                 augment_on=options.augment_on)  # fmt: skip
    reset_peak_memory(device)
    trainer = benchmark_trainer(data, train_options, device)
    with flushed_denormals(device), backend_flags(levers, device):
        real, wait, batch = time_real_loading(
            trainer, options.iterations, options.warmup, options.progress
        )
        fixed = time_fixed_batch(trainer, batch, options.iterations, options.warmup,
                                 options.progress)  # fmt: skip
    real_median, fixed_median = statistics.median(real), statistics.median(fixed)
    estimate = float(data.config.memory_estimate_gb or 0.0)
    peak = peak_memory_gb(device)
    compiled = trainer.compiled
    result = {
        "status": "ran",
        "levers": levers.to_json(),
        # the precision the step ran in: the plan's amp and the bf16 check decide too
        "lever_status": {**lever_status(levers, device, is_3d(data.config)),
                         "precision": precision_name(trainer.dtype)},
        "s_per_iteration_real": real_median,
        "s_per_iteration_fixed_batch": fixed_median,
        "loader_wait_share": sum(wait) / sum(real),
        "device_busy_share": fixed_median / real_median,
        "peak_memory_gb": peak,
        "memory_estimate_gb": estimate,
        "peak_over_estimate": peak / estimate if estimate > 0 else None,
        "compile": ("compiled" if compiled.active else f"eager: {compiled.failure}")
        if levers.compile else "off",
        "real_s": real,
        "fixed_s": fixed,
        "wait_s": wait,
    }  # fmt: skip
    return result, trainer


def prediction_network(workspace: Workspace, data: FoldData, fold: int | str,
                       trained: torch.nn.Module, device: torch.device
                       ) -> tuple[torch.nn.Module, str]:  # fmt: skip
    """The fold's final checkpoint when it has one (and it fits the plans), else the
    briefly trained network: prediction speed does not depend on the weights."""
    path = FoldLayout(result_folder(workspace, data, fold)).checkpoint("final")
    if not path.is_file():
        return trained, f"the benchmark's briefly trained network (no {path})"
    try:
        return load_network(path, data.plans.plans_id, data.config, str(device)), str(path)
    except InvalidInputError as error:  # trained with other plans: time the new ones
        return trained, f"the benchmark's briefly trained network ({error.problems[0]})"


def time_prediction(
    workspace: Workspace, data: FoldData, network: torch.nn.Module, device: torch.device,
    options: BenchmarkOptions,
) -> dict[str, Any]:  # fmt: skip
    """Seconds per case through ``predict_folder`` (read, preprocess, sliding window,
    revert, write), without and with mirroring TTA, after one untimed warm-up case."""
    ids = sorted(data.val_ids or data.train_ids)[: options.prediction_cases]
    cases = input_cases(open_raw(workspace, data.dataset), ids)
    spec = data.config.preprocessing_spec
    classes = int(data.config.network.kwargs["num_classes"])
    result: dict[str, Any] = {"cases": ids}
    with tempfile.TemporaryDirectory(prefix="autoseg-benchmark-") as out:
        for tta in (False, True):
            settings = InferenceSettings.from_configuration(
                data.config, classes, device=str(device), tta=tta
            )
            if not tta:  # warm-up: cuDNN, allocator, first-call overheads
                predict_folder(cases[:1], out, [network], spec, settings, overwrite=True)
            times = []
            for case in tqdm(cases, desc=f"predict tta={tta}", disable=not options.progress,
                             leave=False):  # fmt: skip
                start = time.perf_counter()
                predict_folder([case], out, [network], spec, settings, overwrite=True)
                synchronize(device)
                times.append(time.perf_counter() - start)
            key = "tta" if tta else "no_tta"
            result[key] = {"median_s_per_case": statistics.median(times), "s_per_case": times}
    return result


def lever_runs(
    data: FoldData, device: torch.device, options: BenchmarkOptions
) -> tuple[list[dict[str, Any]], torch.nn.Module]:
    """Every run of the benchmark (one, or the sweep) and the baseline's network.

    In a sweep a failing run (out of memory, an unsupported lever) is recorded as failed
    and the sweep goes on; a single run raises.
    """
    plan: list[tuple[str, Any]] = [("baseline", options.levers)]
    if options.sweep:
        plan = sweep(options.levers, device, is_3d(data.config), options.sweep_levers)
    runs, network = [], None
    for name, levers in plan:
        if isinstance(levers, str):  # the lever does not apply here
            runs.append({"name": name, "status": levers})
            continue
        print(f"benchmark run '{name}'", flush=True)
        try:
            result, trainer = measure_levers(data, levers, device, options)
        except Exception as error:
            if not options.sweep:
                raise
            runs.append({"name": name, "status": f"failed: {type(error).__name__}: {error}"[:300]})
            continue
        if network is None:
            network = trainer.network
        runs.append({"name": name, **result})
        del trainer
        release(device)
    if network is None:
        raise InvalidInputError("no benchmark run succeeded (see the failures above)")
    return runs, network


def release(device: torch.device) -> None:
    """Free what a finished run held, so the next run's peak is its own."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def default_output(workspace: Workspace, data: FoldData, device: torch.device) -> Path:
    """``results/<NAME>/<CONFIG>/benchmark_<device>.json``."""
    return (
        RunLayout(workspace, data.dataset).configuration(data.configuration).benchmark(device.type)
    )


def run_benchmark(
    workspace: Workspace,
    dataset: str,
    configuration: str,
    options: BenchmarkOptions = BenchmarkOptions(),
    output: Path | None = None,
) -> tuple[dict[str, Any], Path]:
    """Benchmark one planned configuration on this machine and write the JSON.

    Args:
        workspace: raw / preprocessed / results roots.
        dataset: planned and preprocessed with ``autoseg_plan``.
        configuration: a configuration of its plans.
        options: what to measure.
        output: the JSON file (default :func:`default_output`).

    Returns:
        ``(report, path)``: the report as written, and where.

    Raises:
        InvalidInputError: missing plans or caches, an unknown configuration or fold.
    """
    data = load_fold(workspace, dataset, configuration, options.fold)
    device = resolve_device(options.device)
    runs, trained = lever_runs(data, device, options)
    report: dict[str, Any] = {
        "schema": SCHEMA, "dataset": data.dataset, "configuration": configuration,
        "fold": str(options.fold), "plans_id": data.plans.plans_id,
        "device": device.type, "device_name": device_name(device),
        "torch": torch.__version__, "patch_size": list(data.config.patch_size),
        "batch_size": int(data.config.batch_size),
        "parameters": int(data.config.parameters),
        "memory_estimate_gb": float(data.config.memory_estimate_gb or 0.0),
        "memory_source": memory_source(device), "iterations": options.iterations,
        "warmup": options.warmup, "num_workers": options.num_workers,
        "augmentation_on": "device" if augments_on_device(options.augment_on, device) else "cpu",
        "runs": runs,
    }  # fmt: skip
    if options.prediction_cases:
        network, weights = prediction_network(workspace, data, options.fold, trained, device)
        timings = time_prediction(workspace, data, network, device, options)
        report["prediction"] = {"weights": weights, **timings}
    path = Path(output) if output is not None else default_output(workspace, data, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, report)
    return report, path
