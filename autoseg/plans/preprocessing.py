"""The preprocessing part of a configuration, and the spec of the cache it builds.

A configuration carries ``spacing_mm``, ``normalization`` (one entry per channel) and a
``preprocessing`` object (:class:`PreprocessingOptions`); together they are exactly a
:class:`PreprocessingSpec`: every setting that changes a cache.

A cache folder is keyed by :attr:`PreprocessingSpec.data_id`, derived from the spec's content,
so configurations that share a spec (2D, 2.5D and 3D at the same spacing) share one cache and a
changed plan lands in a new folder instead of silently mixing old and new cases.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from autoseg.plans.record import Record

# Bump when the code's output for the same spec changes: old caches then stop matching.
CACHE_FORMAT_VERSION = 1

NORMALIZATION_SCHEMES = ("ct", "zscore_brain", "zscore", "none", "rescale_0_1")
DATA_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class PreprocessingOptions(Record):
    """The configuration's ``preprocessing`` object (see :class:`PreprocessingSpec`)."""

    crop_to_nonzero: bool = True
    n4: bool = False
    anisotropy_threshold: float = 3.0
    data_dtype: str = "float32"
    foreground_samples: int = 10000
    contralateral: bool = False


OPTIONS = PreprocessingOptions()


@dataclass(frozen=True)
class ChannelNormalization(Record):
    """How one image channel is normalised.

    Attributes:
        scheme: ``ct`` (clip to ``clip_low``/``clip_high``, then z-score with the dataset's
            ``mean``/``std``), ``zscore_brain`` (per-image z-score inside the nonzero mask, 0
            outside), ``zscore`` (whole image), ``rescale_0_1`` or ``none``.
        clip_low: lower clip value (CT: foreground percentile 0.5 from the fingerprint).
        clip_high: upper clip value (CT: foreground percentile 99.5).
        mean: global foreground mean after clipping (CT).
        std: global foreground standard deviation after clipping (CT).
    """

    scheme: str
    clip_low: float | None = None
    clip_high: float | None = None
    mean: float | None = None
    std: float | None = None

    def __post_init__(self) -> None:
        if self.scheme not in NORMALIZATION_SCHEMES:
            raise ValueError(
                f"unknown normalisation scheme '{self.scheme}'; known: "
                + ", ".join(NORMALIZATION_SCHEMES)
            )
        if self.scheme == "ct":
            missing = [
                name
                for name in ("clip_low", "clip_high", "mean", "std")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"ct normalisation needs {', '.join(missing)}")

    def canonical(self) -> ChannelNormalization:
        """Every key present, numbers as floats: the form a cache's hash is taken of."""

        def number(value: float | None) -> float | None:
            return None if value is None else float(value)

        return ChannelNormalization(
            self.scheme, *(number(v) for v in (self.clip_low, self.clip_high, self.mean, self.std))
        )


@dataclass(frozen=True)
class PreprocessingSpec:
    """Everything that decides the content of a preprocessed cache.

    Attributes:
        spacing_mm: target voxel size ``(z, y, x)`` in mm.
        normalization: one entry per image channel, in channel order.
        crop_to_nonzero: crop to the (hole-filled) nonzero region of all channels.
        n4: N4 bias-field correction of every non-CT channel before normalisation.
        anisotropy_threshold: a spacing ratio max/min above which the thick axis is
            resampled with nearest neighbour instead of being blended.
        data_dtype: ``float32`` or ``float16`` for the stored image data.
        foreground_samples: voxel coordinates sampled per class for oversampling.
        contralateral: append each channel mirrored across the head's midline plane
            (:mod:`autoseg.preprocessing.contralateral`); the cache then holds twice the
            image channels.
    """

    spacing_mm: tuple[float, float, float]
    normalization: tuple[ChannelNormalization, ...]
    crop_to_nonzero: bool = OPTIONS.crop_to_nonzero
    n4: bool = OPTIONS.n4
    anisotropy_threshold: float = OPTIONS.anisotropy_threshold
    data_dtype: str = OPTIONS.data_dtype
    foreground_samples: int = OPTIONS.foreground_samples
    contralateral: bool = OPTIONS.contralateral
    _hash: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        spacing = tuple(float(v) for v in self.spacing_mm)
        if len(spacing) != 3 or not all(math.isfinite(v) and v > 0 for v in spacing):
            raise ValueError(f"spacing_mm must be three positive numbers, got {self.spacing_mm}")
        if not self.normalization:
            raise ValueError("normalization needs one entry per image channel")
        if self.data_dtype not in DATA_DTYPES:
            raise ValueError(f"data_dtype must be one of {DATA_DTYPES}, got '{self.data_dtype}'")
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "normalization", tuple(e.canonical() for e in self.normalization))
        canonical = json.dumps(
            {"format": CACHE_FORMAT_VERSION, **self.to_json()}, sort_keys=True, allow_nan=False
        )
        object.__setattr__(self, "_hash", hashlib.sha256(canonical.encode()).hexdigest()[:16])

    @property
    def num_channels(self) -> int:
        """Image channels a case brings (one file each)."""
        return len(self.normalization)

    @property
    def channel_copies(self) -> int:
        """Stacked copies of the image's channels in the cache: 2 with the contralateral
        mirrors (which share their augmentation draws), else 1."""
        return 2 if self.contralateral else 1

    @property
    def network_channels(self) -> int:
        """Channels the cache holds and the network sees: the image's, times their copies."""
        return self.num_channels * self.channel_copies

    @property
    def spec_hash(self) -> str:
        """A stable content hash (16 hex digits) stored in every case json of the cache."""
        return self._hash

    @property
    def data_id(self) -> str:
        """Cache folder name: readable spacing plus a short content hash, e.g.
        ``3d_2.00x2.00x2.00_ab12cd``. ``3d`` names the cache format (whole volumes), which
        every configuration reads, not a configuration."""
        spacing = "x".join(f"{v:.2f}" for v in self.spacing_mm)
        return f"3d_{spacing}_{self.spec_hash[:6]}"

    def to_json(self) -> dict[str, Any]:
        return {
            "spacing_mm": list(self.spacing_mm),
            "normalization": [entry.to_json() for entry in self.normalization],
            "crop_to_nonzero": self.crop_to_nonzero,
            "n4": self.n4,
            "anisotropy_threshold": self.anisotropy_threshold,
            "data_dtype": self.data_dtype,
            "foreground_samples": self.foreground_samples,
            # written only when on, so the hashes (cache folders) of older specs stay put
            **({"contralateral": True} if self.contralateral else {}),
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> PreprocessingSpec:
        """Read :meth:`to_json`'s object (``preprocessing_spec.json`` of a cache)."""
        options = {k: v for k, v in payload.items() if k not in ("spacing_mm", "normalization")}
        return cls.from_parts(
            payload["spacing_mm"],
            tuple(
                ChannelNormalization.from_json(e, "normalization") for e in payload["normalization"]
            ),
            PreprocessingOptions.from_json(options, "preprocessing"),
        )

    @classmethod
    def from_parts(
        cls,
        spacing_mm: Any,
        normalization: tuple[ChannelNormalization, ...],
        options: PreprocessingOptions,
    ) -> PreprocessingSpec:
        """The spec of a configuration's spacing, normalisation and preprocessing options."""
        return cls(
            spacing_mm=tuple(float(v) for v in spacing_mm),
            normalization=normalization,
            crop_to_nonzero=bool(options.crop_to_nonzero),
            n4=bool(options.n4),
            anisotropy_threshold=float(options.anisotropy_threshold),
            data_dtype=str(options.data_dtype),
            foreground_samples=int(options.foreground_samples),
            contralateral=bool(options.contralateral),
        )
