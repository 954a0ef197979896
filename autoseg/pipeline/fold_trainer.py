"""The trainer of one fold, assembled from its plans entry and the run's options.

Everything that changes results comes from the plans (network, loss, optimiser, schedule,
patch, batch, augmentation); :class:`TrainOptions` holds what does not (device, workers,
paths, resuming, tracking). :func:`build_trainer` builds each part with a small function
and hands them to :class:`~autoseg.training.trainer.Trainer`; the step that runs it is
:mod:`autoseg.pipeline.fit_fold`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from autoseg.core.checkpoint import load_pretrained
from autoseg.core.cpu import cpu_threads
from autoseg.core.device import check_device, resolve_device
from autoseg.core.errors import InvalidInputError
from autoseg.core.run_layout import (
    FoldLayout,
    RunLayout,
)
from autoseg.core.workspace import Workspace
from autoseg.networks import build_network
from autoseg.networks.base import to_channels_last
from autoseg.pipeline.fold_data import FoldData
from autoseg.plans import Configuration
from autoseg.training import callbacks as cb
from autoseg.training.augmentation import AUGMENT_ON
from autoseg.training.batches import LoaderBatches, PatchGrowth
from autoseg.training.bf16_check import bf16_step_survives
from autoseg.training.distributed import (
    SINGLE,
    DistContext,
    init_distributed,
    rank_seed,
    wrap_model,
)
from autoseg.training.losses import DeepSupervisionLoss, build_loss
from autoseg.training.optim import (
    build_optimizer,
    build_schedule,
    encoder_prefixes,
    freeze,
    trainable_parameters,
)
from autoseg.training.speed import DEFAULT_LEVERS, SpeedLevers, optimizer_flags, pins_memory
from autoseg.training.tracking import build_tracker
from autoseg.training.trainer import Trainer, TrainSettings, amp_dtype

BUDGET_EPOCH_CAP = 1000  # the most epochs a --max-minutes run may fit into its budget


@dataclass(frozen=True)
class TrainOptions:
    """Settings of a training run that do not change what is learned (or override the
    plans on purpose: epochs, iterations).

    Attributes:
        epochs: overrides the plans' ``training.epochs``.
        iterations_per_epoch: overrides ``training.iterations_per_epoch``.
        device: ``auto`` (cuda > mps > cpu), ``cuda``, ``mps`` or ``cpu``.
        num_workers: loader processes (None: RAM-aware default; 0: in-process).
        continue_training: resume from ``checkpoint_latest.pt`` (``--continue``).
        overwrite: start afresh even though the fold folder holds checkpoints.
        pretrained: checkpoint whose matching weights initialise the network.
        freeze: ``"encoder"`` freezes the encoder (with ``pretrained``).
        finetune_lr_scale: LR factor when starting from pretrained weights.
        tracker: ``mlflow`` or ``wandb`` (None: the CSV log only).
        tracking_uri: MLflow URI (None: ``sqlite:///<results>/<NAME>/mlruns.db``).
        seed: seeds the network initialisation and the batch sequence.
        amp: mixed precision on CUDA (ignored elsewhere).
        checkpoint_minutes: wall-clock interval of mid-epoch ``checkpoint_latest.pt``.
        max_minutes: stop after this much training and write the final checkpoint.
        early_stopping_patience: epochs without EMA-Dice improvement before stopping.
        patch_growth: start with this fraction of the planned patch (None: off).
        augment_on: ``cpu`` (loader workers), ``device`` (torch on the training device
            after the copy; the workers only read and cut) or ``auto`` (device on CUDA).
        progress: show tqdm bars.
        distributed: this process's place in a DDP run.
        levers: how fast a step runs (``--compile``, ``--bf16`` ...); defaults are the
            trainer's own behaviour.
    """

    epochs: int | None = None
    iterations_per_epoch: int | None = None
    device: str = "auto"
    num_workers: int | None = None
    continue_training: bool = False
    overwrite: bool = False
    pretrained: Path | None = None
    freeze: str | None = None
    finetune_lr_scale: float = 0.1
    tracker: str | None = None
    tracking_uri: str | None = None
    seed: int = 12345
    amp: bool = True
    checkpoint_minutes: float | None = 30.0
    max_minutes: float | None = None
    early_stopping_patience: int | None = None
    patch_growth: float | None = None
    augment_on: str = "auto"
    progress: bool = True
    distributed: DistContext = SINGLE
    levers: SpeedLevers = DEFAULT_LEVERS

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.augment_on not in AUGMENT_ON:
            raise InvalidInputError(
                f"--augment-on {self.augment_on}: expected one of {', '.join(AUGMENT_ON)}"
            )
        # 0 would silently fall back to the plans' value, -1 "finish" an untrained network.
        for flag, value in (("--epochs", self.epochs),
                            ("--iters-per-epoch", self.iterations_per_epoch)):  # fmt: skip
            if value is not None and (isinstance(value, bool) or value < 1):
                raise InvalidInputError(f"{flag}: must be a positive integer, got {value}")


DEFAULT_TRAIN_OPTIONS = TrainOptions()


def augments_on_device(option: str, device: torch.device) -> bool:
    """``auto`` augments on CUDA devices (the loader's CPU cores then only read and cut)
    and in the loader workers elsewhere."""
    return option == "device" or (option == "auto" and device.type == "cuda")


def device_transform(on_device: bool) -> Any:
    """The trainer's batch transform: augmentation on the device, or none."""
    if not on_device:
        return None
    from autoseg.training.device_augmentation import augment_on_device

    return augment_on_device


def make_batches(
    data: FoldData,
    network: torch.nn.Module,
    options: TrainOptions,
    epochs: int,
    on_device: bool = False,
) -> LoaderBatches:
    """Training batches from the loader module, growing the patch when asked."""
    from autoseg.training.loader import make_training_loader

    config = data.config
    factory = functools.partial(make_training_loader, augment_on_device=on_device)
    pin = pins_memory(options.levers, next(network.parameters()).device)
    oversample = config.training.oversample_foreground
    make = functools.partial(_loader_at, factory, data, options, oversample, pin)
    growth = None
    if options.patch_growth is not None:
        growth = PatchGrowth(tuple(config.patch_size), tuple(network.divisors), epochs,
                             start_fraction=options.patch_growth)  # fmt: skip
    return LoaderBatches(make, list(config.patch_size), growth)


def _loader_at(
    factory: Any, data: FoldData, options: TrainOptions, oversample: float, pin: bool,
    patch: Sequence[int], start: int,
) -> Any:  # fmt: skip
    loader = factory(
        data.cache, data.train_ids, patch, data.config.batch_size,
        slices=data.config.slices, augmentation=data.config.augmentation,
        oversample_foreground=oversample,
        per_lesion=float(data.config.training.per_lesion_sampling),
        num_workers=options.num_workers,
        seed=rank_seed(options.seed, options.distributed.rank), start=start, pin_memory=pin,
        channel_copies=data.config.preprocessing_spec.channel_copies,
    )  # fmt: skip
    # the loader's workers are busy processes too: torch keeps the cores they leave
    cpu_threads(reserve=int(getattr(loader, "num_workers", 0)))
    return loader


def make_validation(data: FoldData, options: TrainOptions) -> Any:
    """Fixed held-out patches (the training cases when the fold has none: fold ``all``)."""
    from autoseg.training.loader import make_validation_batches

    config = data.config
    return make_validation_batches(
        data.cache, data.val_ids or data.train_ids, list(config.patch_size),
        config.batch_size, int(config.training.validation_iterations),
        slices=config.slices, seed=options.seed,
        oversample_foreground=config.training.oversample_foreground,
    )  # fmt: skip


def build_model(data: FoldData, options: TrainOptions, device: torch.device) -> torch.nn.Module:
    """The plans' network (seeded), with pretrained weights and frozen encoder if asked."""
    torch.manual_seed(options.seed)
    network = build_network(data.config.network.to_json())
    if options.pretrained is not None:
        print(load_pretrained(network, Path(options.pretrained)).summary())
    if options.freeze is not None:
        if options.freeze != "encoder":
            raise InvalidInputError(f"--freeze {options.freeze}: only 'encoder' is supported")
        frozen = freeze(network, encoder_prefixes(network))
        print(f"froze {len(frozen)} encoder parameter tensors")
    network = network.to(device)
    return to_channels_last(network) if runs_channels_last(data, options) else network


def is_3d(config: Configuration) -> bool:
    """3D patches: the network runs channels-last (much faster 3D convolutions)."""
    return config.dims == 3


def runs_channels_last(data: FoldData, options: TrainOptions) -> bool:
    """3D configurations run channels-last unless the lever is switched off."""
    return is_3d(data.config) and options.levers.channels_last


def build_optimisation(
    data: FoldData, network: torch.nn.Module, options: TrainOptions, epochs: int
) -> tuple[torch.nn.Module, torch.optim.Optimizer, Any]:
    """Deep-supervision loss, optimiser (lower LR when fine-tuning) and LR schedule."""
    training = data.config.training
    base = build_loss(training.loss, **training.loss_kwargs)
    weights = training.deep_supervision_weights
    loss = DeepSupervisionLoss(base, None if weights is None else list(weights))
    settings = training.optimizer_settings()
    if options.pretrained is not None:
        settings["lr"] = training.lr * options.finetune_lr_scale
    settings |= optimizer_flags(options.levers, next(network.parameters()).device)
    optimizer = build_optimizer(training.optimizer, trainable_parameters(network), **settings)
    # the run's epochs win over the plans' (a --max-minutes run refits them)
    schedule = build_schedule(training.schedule, epochs, **training.schedule_settings())
    return loss, optimizer, schedule


def build_callbacks(
    workspace: Workspace, data: FoldData, fold: int | str, folder: Path, options: TrainOptions
) -> list[cb.Callback]:
    """Flag-setting hooks on every rank first, then rank 0's writers (see callbacks)."""
    hooks: list[cb.Callback] = [cb.SignalCheckpoint(), cb.YieldToNeighbours()]
    if options.max_minutes is not None:
        hooks.append(cb.TimeBudget(options.max_minutes))
    if options.early_stopping_patience is not None:
        hooks.append(cb.EarlyStopping(options.early_stopping_patience))
    if not options.distributed.is_main:
        return hooks
    hooks += [
        cb.Checkpointer(folder, options.checkpoint_minutes),
        cb.CSVLog(FoldLayout(folder).training_log),
        cb.ProgressPlot(FoldLayout(folder).progress_plot),
        cb.ProgressBar(options.progress),
    ]
    tracker = build_tracker(
        options.tracker, tracking_uri=options.tracking_uri, experiment=data.dataset,
        run_name=f"{data.configuration}_fold_{fold}", params=data.config.to_json(),
        fold_folder=folder, results_folder=RunLayout(workspace, data.dataset).results,
    )  # fmt: skip
    return hooks + ([tracker] if tracker is not None else [])


def train_settings(
    data: FoldData, fold: int | str, options: TrainOptions, epochs: int, iterations: int
) -> TrainSettings:
    """The loop settings of a fold from its plans entry and the options."""
    training = data.config.training
    return TrainSettings(
        epochs, iterations, amp=options.amp and bool(training.amp),
        gradient_clip=training.gradient_clip,
        channels_last=runs_channels_last(data, options),
        auxiliary_weight=float(training.auxiliary_loss_weight),
        metadata={"plans_id": data.plans.plans_id, "configuration": data.configuration,
                  "network": data.config.network.to_json(), "dataset": data.dataset,
                  "fold": str(fold)},
        levers=options.levers,
    )  # fmt: skip


def settle_cpu_precision(
    settings: TrainSettings,
    config: Configuration,
    network: torch.nn.Module,
    device: torch.device,
) -> TrainSettings:
    """Float32 instead of bf16 on a CPU where a bf16 step of this network and patch does
    not survive (torch 2.13's oneDNN crashes on some 3D convolutions; see
    :mod:`~autoseg.training.bf16_check`).

    Raises:
        InvalidInputError: ``--bf16`` asked for, and the step does not survive.
    """
    if device.type != "cpu" or amp_dtype(device, settings.amp, settings.levers) != torch.bfloat16:
        return settings
    shape = (config.batch_size, network.in_channels, *config.patch_size)
    if bf16_step_survives(config.network.to_json(), shape, settings.channels_last):
        return settings
    problem = (
        f"a bf16 training step of {config.network.name} on a {shape} batch crashed or hung "
        f"in a test process on this CPU (torch {torch.__version__})"
    )
    if settings.levers.precision == "bf16":
        raise InvalidInputError(f"--bf16: {problem}; train without --bf16")
    print(f"{problem}: training in float32")
    return replace(settings, levers=replace(settings.levers, precision="fp32"))


def build_trainer(
    workspace: Workspace, data: FoldData, fold: int | str, folder: Path, options: TrainOptions
) -> Trainer:
    """Every part of a fold's training, built from the plans and the options."""
    training = data.config.training
    epochs = options.epochs if options.epochs is not None else int(training.epochs)
    if options.max_minutes is not None and options.epochs is None:
        # A time budget sets the length: TimeBudget fits the epochs to it after the first
        # one, so a longer budget trains longer instead of stopping at the plans' epochs.
        epochs = max(epochs, BUDGET_EPOCH_CAP)
    iterations = options.iterations_per_epoch
    if iterations is None:
        iterations = int(training.iterations_per_epoch)
    device = init_distributed(options.distributed, resolve_device(options.device))
    network = build_model(data, options, device)
    loss, optimizer, schedule = build_optimisation(data, network, options, epochs)
    weights = training.deep_supervision_weights or ()
    model = wrap_model(network, options.distributed, find_unused=any(w == 0 for w in weights))
    settings = train_settings(data, fold, options, epochs, iterations)
    settings = settle_cpu_precision(settings, data.config, network, device)
    on_device = augments_on_device(options.augment_on, device)
    return Trainer(
        model, loss, optimizer, schedule, make_batches(data, network, options, epochs, on_device),
        make_validation(data, options), settings, device,
        build_callbacks(workspace, data, fold, folder, options), options.distributed,
        batch_transform=device_transform(on_device),
    )  # fmt: skip
