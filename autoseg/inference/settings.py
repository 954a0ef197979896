"""The settings of one inference run: a thin record around the pure functions' arguments."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from autoseg.inference.slices import SLICE_PADDINGS
from autoseg.plans import Configuration, InferenceWindow
from autoseg.plans.configuration import window_part

PROBABILITY_DTYPES = ("float16", "float32")
WINDOW = InferenceWindow()  # the plans' defaults, declared in autoseg.plans


@dataclass(frozen=True)
class InferenceSettings:
    """How cases are predicted and what is written.

    Attributes:
        patch_size: the network's window, ``(z, y, x)`` for 3D or ``(y, x)`` for 2D.
        num_classes: K, output channels of every network (background included).
        slices: k adjacent slices stacked as channels for a 2D network (1 for 3D).
        step: window stride as a fraction of the patch (0.5 = half-overlapping windows).
        gaussian: Gaussian importance weighting of window voxels.
        sigma_scale: Gaussian sigma as a fraction of the patch.
        mirror_axes: patch axes mirrored for TTA (``(0, 1, 2)`` for 3D, ``(0, 1)`` for 2D).
        tta: mirroring TTA on or off.
        mirror_subset: the axis combinations to use instead of all ``2 ** n`` (each a
            tuple of axes; ``()`` is the unmirrored input); None for all of them.
        batch_size: windows per forward pass; None sizes it automatically.
        device: torch device string (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
        amp: autocast: float16 on CUDA, bf16 on a CPU where it is faster (labels change by rounding
            only; :func:`~autoseg.inference.case_prediction.autocast_dtype`).
        slice_padding: ``zero`` (as the training loader pads) or ``replicate``.
        save_probabilities: also write ``<case>.npz`` probabilities and ``<case>.json``.
        probability_dtype: ``float16`` (half the disk) or ``float32`` in the npz.
        postprocessing: applied to the labels before writing, see
            :func:`autoseg.inference.postprocess.postprocess`.
        temperature: each network's logits are divided by it before the softmax
            (calibration fitted on cross-validation, :mod:`autoseg.inference.calibration`;
            1.0 leaves them as trained).
        progress: show progress bars.
    """

    patch_size: tuple[int, ...]
    num_classes: int
    slices: int = 1
    step: float = WINDOW.step
    gaussian: bool = WINDOW.gaussian
    sigma_scale: float = WINDOW.gaussian_sigma_scale
    mirror_axes: tuple[int, ...] = ()
    tta: bool = True
    mirror_subset: tuple[tuple[int, ...], ...] | None = None
    batch_size: int | None = None
    device: str = "cpu"
    amp: bool = False
    slice_padding: str = "zero"
    save_probabilities: bool = False
    probability_dtype: str = "float16"
    postprocessing: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    progress: bool = False

    def __post_init__(self) -> None:
        problems = []
        if len(self.patch_size) not in (2, 3):
            problems.append(f"patch_size must have 2 or 3 axes, got {self.patch_size}")
        if any(a < 0 or a >= len(self.patch_size) for a in self.mirror_axes):
            problems.append(f"mirror_axes {self.mirror_axes} index outside the patch axes")
        if self.slices < 1 or self.slices % 2 == 0:
            problems.append(f"slices must be odd and positive, got {self.slices}")
        if not 0 < self.step <= 1:
            problems.append(f"step must lie in (0, 1], got {self.step}")
        if self.slice_padding not in SLICE_PADDINGS:
            problems.append(f"slice_padding must be one of {SLICE_PADDINGS}")
        if not self.temperature > 0:
            problems.append(f"temperature must be positive, got {self.temperature}")
        if self.probability_dtype not in PROBABILITY_DTYPES:
            problems.append(f"probability_dtype must be one of {PROBABILITY_DTYPES}")
        if problems:
            raise ValueError("; ".join(problems))
        object.__setattr__(self, "patch_size", tuple(int(v) for v in self.patch_size))
        object.__setattr__(self, "mirror_axes", tuple(int(v) for v in self.mirror_axes))

    @property
    def dim(self) -> int:
        """2 for slice-wise networks, 3 for volumetric ones."""
        return len(self.patch_size)

    def with_(self, **changes: Any) -> InferenceSettings:
        """A copy with some settings changed (flags override plans this way)."""
        return replace(self, **changes)

    @classmethod
    def from_configuration(
        cls, configuration: Configuration | dict[str, Any], num_classes: int, **overrides: Any
    ) -> InferenceSettings:
        """Settings from a configuration of the plans, with flags as overrides.

        Reads ``patch_size``, ``slice_context.slices`` and the ``inference`` window
        (``step``, ``gaussian``, ``gaussian_sigma_scale``, ``mirror_axes``).
        """
        patch, slices, window = window_part(configuration)
        values = {
            "patch_size": tuple(patch),
            "num_classes": num_classes,
            "slices": slices,
            "step": float(window.step),
            "gaussian": bool(window.gaussian),
            "sigma_scale": float(window.gaussian_sigma_scale),
            "mirror_axes": tuple(window.mirror_axes),
        }
        values.update(overrides)
        return cls(**values)
