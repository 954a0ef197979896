"""One configuration of plans.json, typed: network, preprocessing, training, augmentation,
inference window. Each default is declared here once; the planner writes these records, and
every stage reads its part of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from autoseg.core.errors import InvalidInputError
from autoseg.plans.preprocessing import (
    ChannelNormalization,
    PreprocessingOptions,
    PreprocessingSpec,
)
from autoseg.plans.record import Decoder, Record, child, record_decoder, records_decoder

# Per-sample chances of the transforms that do not use ``probability`` (nnU-Net-like).
TRANSFORM_PROBABILITIES = {
    "noise": 0.1,
    "brightness": 0.15,
    "contrast": 0.15,
    "low_resolution": 0.25,
    "gamma": 0.3,
}
TRANSFORMS = ("rotation", "scale", "elastic", "noise", "blur", "brightness", "contrast",
              "low_resolution", "gamma")  # fmt: skip


@dataclass(frozen=True)
class NetworkSpec(Record):
    """``{"name": ..., "kwargs": {...}}``: what :func:`autoseg.networks.build_network` takes.

    ``kwargs`` stay a plain JSON object: networks know nothing of plans (DESIGN §2).
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int | None:
        """Output classes, when the kwargs say (every registered network's do)."""
        value = self.kwargs.get("num_classes")
        return None if value is None else int(value)

    @property
    def in_channels(self) -> int:
        """Input channels (image channels times the slice count for 2D), 0 when unsaid."""
        return int(self.kwargs.get("in_channels", 0))


@dataclass(frozen=True)
class SliceContext(Record):
    """2D / 2.5D configurations: ``slices`` adjacent slices (``context`` each side) along z."""

    slices: int = 1
    context: int = 0
    axis: str = "z"


@dataclass(frozen=True)
class TrainingSchedule(Record):
    """The ``training`` object: loss, optimiser, schedule and run length.

    Attributes:
        epochs, iterations_per_epoch, validation_iterations: run length.
        optimizer, lr, momentum, nesterov, weight_decay, betas: the registered optimiser
            and its settings (keys an optimiser does not take are ignored).
        schedule, poly_exponent, restart_epochs, restart_mult, min_lr_fraction: LR schedule.
        loss, loss_kwargs: the registered loss.
        oversample_foreground: share of patches centred on foreground.
        per_lesion_sampling: share of foreground patches centred on a lesion drawn uniformly.
        gradient_clip: gradient norm clip.
        auxiliary_loss_weight: weight of a network's auxiliary loss (LCNN alignment).
        deep_supervision_weights: loss weight per output scale (None: the finest only).
        amp, activation_checkpointing: mixed precision and checkpointing as planned.
    """

    epochs: int = 1000
    iterations_per_epoch: int = 250
    validation_iterations: int = 50
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.99
    nesterov: bool = True
    weight_decay: float = 3e-5
    betas: tuple[float, float] | None = None
    schedule: str = "poly"
    poly_exponent: float = 0.9
    restart_epochs: int | None = None
    restart_mult: int = 2
    min_lr_fraction: float = 0.0
    loss: str = "dice_ce"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    oversample_foreground: float = 0.33
    per_lesion_sampling: float = 0.0
    gradient_clip: float = 12.0
    auxiliary_loss_weight: float = 0.1
    deep_supervision_weights: tuple[float, ...] | None = None
    amp: bool = True
    activation_checkpointing: bool = False

    OPTIONAL = frozenset(
        ("betas", "restart_epochs", "restart_mult", "min_lr_fraction", "loss_kwargs",
         "per_lesion_sampling", "auxiliary_loss_weight")
    )  # fmt: skip

    def stated_amp(self) -> bool:
        """AMP as the plans state it; unsaid counts as off for the memory model, which must
        not assume a saving the plans never promised (training itself defaults to on)."""
        return bool(self.amp) and "amp" not in self.absent_keys

    def optimizer_settings(self) -> dict[str, Any]:
        """The optimiser keywords the plans state; the registered optimiser's own defaults
        fill the rest (AdamW's learning rate and weight decay are not SGD's)."""
        keys = ("lr", "momentum", "weight_decay", "nesterov", "betas")
        stated = {k: getattr(self, k) for k in keys if k not in self.absent_keys}
        return {k: v for k, v in stated.items() if v is not None}

    def schedule_settings(self) -> dict[str, Any]:
        """Keyword arguments of the registered LR schedule."""
        return {
            "poly_exponent": self.poly_exponent,
            "restart_epochs": self.restart_epochs,
            "restart_mult": self.restart_mult,
            "min_lr_fraction": self.min_lr_fraction,
        }


@dataclass(frozen=True)
class Augmentation(Record):
    """The ``augmentation`` object. Ranges are ``[low, high]``; a null range or a
    probability of 0 disables a transform; ``off`` disables all of them.

    ``probability`` is every transform's per-sample chance unless ``probabilities`` names
    its own (keys: rotation, scale, elastic, noise, blur, brightness, contrast,
    low_resolution, gamma); named chances complete :data:`TRANSFORM_PROBABILITIES`.
    Defaults are for 3D patches; :func:`augmentation_defaults` gives those of 2D ones.
    """

    rotation_deg: tuple[float, float] | None = (-30.0, 30.0)
    scale: tuple[float, float] | None = (0.7, 1.4)  # < 1 zooms in (batchgenerators' way)
    elastic: bool = False
    elastic_alpha: tuple[float, float] | None = (0.0, 200.0)
    elastic_sigma: tuple[float, float] | None = (9.0, 13.0)
    gaussian_noise_variance: tuple[float, float] | None = (0.0, 0.1)
    gaussian_blur_sigma: tuple[float, float] | None = (0.5, 1.0)
    brightness: tuple[float, float] | None = (0.75, 1.25)
    contrast: tuple[float, float] | None = (0.75, 1.25)
    low_resolution: tuple[float, float] | None = (0.5, 1.0)
    gamma: tuple[float, float] | None = (0.7, 1.5)
    probability: float = 0.2
    probabilities: dict[str, float] = field(default_factory=dict)
    rotation_axes: str = "all"  # "all" (3D), or "in_plane": about Z only
    mirror_axes: tuple[int, ...] = (0, 1, 2)
    off: bool = False

    OPTIONAL = frozenset({"elastic_alpha", "elastic_sigma", "probabilities", "off"})

    def __post_init__(self) -> None:
        """A misspelt transform in ``probabilities`` would leave its chance at the default
        without a word, so names and chances are checked."""
        unknown = sorted(set(self.probabilities) - set(TRANSFORMS))
        if unknown:
            raise ValueError(
                f"probabilities: unknown transform {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(TRANSFORMS)})"
            )
        for name, chance in self.probabilities.items():
            is_number = isinstance(chance, int | float) and not isinstance(chance, bool)
            if not is_number or not 0 <= chance <= 1:
                raise ValueError(f"probabilities.{name}: {chance!r} is not a chance in [0, 1]")

    def settings(self) -> dict[str, Any]:
        """Every setting as JSON, ``probabilities`` completed: what the transforms read."""
        values = dataclasses.replace(self, absent_keys=frozenset()).to_json()
        values["probabilities"] = {**TRANSFORM_PROBABILITIES, **self.probabilities}
        return values


def augmentation_defaults(dims: int) -> Augmentation:
    """The defaults for 2D or 3D patches: 2D rotates in-plane over the full circle (slices
    have no preferred orientation), 3D by +-30 degrees about every axis."""
    if dims == 2:
        return Augmentation(rotation_deg=(-180.0, 180.0), rotation_axes="in_plane",
                            mirror_axes=(0, 1))  # fmt: skip
    return Augmentation()


@dataclass(frozen=True)
class InferenceWindow(Record):
    """The ``inference`` object: sliding-window step (fraction of the patch), Gaussian
    importance weighting (sigma as a fraction of the patch) and mirroring TTA axes."""

    step: float = 0.5
    gaussian: bool = True
    gaussian_sigma_scale: float = 0.125
    mirror_axes: tuple[int, ...] = ()


@dataclass(frozen=True)
class MemoryEstimate(Record):
    """The planner's estimate of peak training memory, by part (GB)."""

    activations_gb: float = 0.0
    gradients_gb: float = 0.0
    optimizer_state_gb: float = 0.0
    total_gb: float = 0.0
    weights_gb: float = 0.0
    workspace_gb: float = 0.0


@dataclass(frozen=True)
class Configuration(Record):
    """One entry of ``configurations``: everything a stage needs to train or predict it.

    Attributes:
        data_id: cache folder (a hash of the preprocessing spec, refreshed on writing).
        spacing_mm, normalization, preprocessing: the preprocessing spec's parts.
        patch_size: ``(z, y, x)`` or ``(y, x)``; batch_size: patches per step.
        network: the network spec; parameters: its parameter count.
        memory_estimate_gb, memory_estimate, gflops_per_iteration, fits_budget,
            ladder_rung: what the planner estimated and chose.
        slice_context: the slice stack of 2D configurations (None: 3D).
        training, augmentation, inference: the typed parts.
    """

    data_id: str
    spacing_mm: tuple[float, ...]
    patch_size: tuple[int, ...]
    batch_size: int
    normalization: tuple[ChannelNormalization, ...]
    network: NetworkSpec
    parameters: int
    memory_estimate_gb: float
    training: TrainingSchedule = field(default_factory=TrainingSchedule)
    augmentation: Augmentation = field(default_factory=Augmentation)
    inference: InferenceWindow = field(default_factory=InferenceWindow)
    preprocessing: PreprocessingOptions = field(default_factory=PreprocessingOptions)
    slice_context: SliceContext | None = None
    memory_estimate: MemoryEstimate | None = None
    gflops_per_iteration: float | None = None
    fits_budget: bool | None = None
    ladder_rung: int | None = None

    DECODERS: ClassVar[dict[str, Decoder]] = {
        "network": record_decoder(NetworkSpec),
        "normalization": records_decoder(ChannelNormalization),
        "training": record_decoder(TrainingSchedule),
        "inference": record_decoder(InferenceWindow),
        "preprocessing": record_decoder(PreprocessingOptions),
        "slice_context": record_decoder(SliceContext),
        "memory_estimate": record_decoder(MemoryEstimate),
    }

    @classmethod
    def from_json(cls, payload: Any, where: str, base: Record | None = None) -> Configuration:
        """Read an entry; its augmentation defaults follow its patch's dimensions."""
        config = super().from_json(payload, where, base)
        defaults = augmentation_defaults(len(config.patch_size))
        block = payload.get("augmentation", {})
        augmentation = Augmentation.from_json(block, child(where, "augmentation"), defaults)
        return dataclasses.replace(config, augmentation=augmentation)

    @property
    def dims(self) -> int:
        """2 for slice-wise configurations, 3 for volumetric ones."""
        return len(self.patch_size)

    @property
    def slices(self) -> int:
        """Slices per input stack: the slice context's for 2D, else 1."""
        return self.slices_stated if self.dims == 2 else 1

    @property
    def slices_stated(self) -> int:
        """The slice context's slices, 1 when the entry has none."""
        return 1 if self.slice_context is None else int(self.slice_context.slices)

    @property
    def preprocessing_spec(self) -> PreprocessingSpec:
        """The spec its cache is built with.

        Raises:
            InvalidInputError: the entry does not describe a valid spec.
        """
        try:
            return PreprocessingSpec.from_parts(
                self.spacing_mm, self.normalization, self.preprocessing
            )
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"plans: invalid preprocessing entry ({error})") from error


def window_part(
    entry: Configuration | dict[str, Any],
) -> tuple[tuple[int, ...], int, InferenceWindow]:
    """What a sliding window needs of a configuration: patch, slices per stack, window.

    Args:
        entry: a configuration, or a JSON entry holding at least ``patch_size`` (and
            ``slice_context`` / ``inference`` where they are not the defaults).
    """
    if isinstance(entry, Configuration):
        return entry.patch_size, entry.slices_stated, entry.inference
    context = entry.get("slice_context")
    slices = 1 if context is None else SliceContext.from_json(context, "slice_context").slices
    window = InferenceWindow.from_json(entry.get("inference", {}), "inference")
    return tuple(entry["patch_size"]), int(slices), window
