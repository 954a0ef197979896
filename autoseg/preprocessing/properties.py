"""What a preprocessed case carries besides its arrays: how to undo it, and where its lesions are.

This is the ``<case>.json`` of the cache (DESIGN §6) and what inference keeps in memory to
put a prediction back into the input's exact grid.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autoseg.data.records import ImageMeta
from autoseg.preprocessing.crop import CropBox

Shape3 = tuple[int, int, int]


@dataclass(frozen=True)
class CaseProperties:
    """Geometry and bookkeeping of one preprocessed case.

    Attributes:
        case_id: the case's id (empty for an ad-hoc inference input).
        meta: geometry of the original image (first channel's file).
        crop_box: the box cut out of the original grid (the full grid if not cropped).
        shape_after_crop: ``(z, y, x)`` at the original spacing, after cropping.
        shape_after_resampling: ``(z, y, x)`` of the cached arrays.
        spacing_mm: target spacing ``(z, y, x)`` of the cached arrays.
        thick_axis: axis resampled with nearest neighbour (anisotropic data), or None.
        spec_hash: :attr:`PreprocessingSpec.spec_hash` of the spec that made the case.
        class_voxel_counts: voxels per label value (>= 0) in the cached ``seg``.
        foreground_coordinates: per label value > 0, sampled ``(N, 3)`` int ``(z, y, x)``
            voxel indices into the cached arrays, for foreground oversampling.
    """

    case_id: str
    meta: ImageMeta
    crop_box: CropBox
    shape_after_crop: Shape3
    shape_after_resampling: Shape3
    spacing_mm: tuple[float, float, float]
    thick_axis: int | None
    spec_hash: str
    class_voxel_counts: dict[int, int] = field(default_factory=dict)
    foreground_coordinates: dict[int, np.ndarray] = field(default_factory=dict, compare=False)

    @property
    def original_shape(self) -> Shape3:
        return tuple(self.meta.shape)

    def to_json(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "meta": self.meta.to_json(),
            "crop_box": self.crop_box.to_json(),
            "original_shape": list(self.original_shape),
            "shape_after_crop": list(self.shape_after_crop),
            "shape_after_resampling": list(self.shape_after_resampling),
            "spacing_mm": list(self.spacing_mm),
            "thick_axis": self.thick_axis,
            "spec_hash": self.spec_hash,
            "class_voxel_counts": {str(k): int(v) for k, v in self.class_voxel_counts.items()},
            "foreground_coordinates": {
                str(k): np.asarray(v).tolist() for k, v in self.foreground_coordinates.items()
            },
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> CaseProperties:
        coordinates = {
            int(k): np.asarray(v, dtype=np.int64).reshape(-1, 3)
            for k, v in payload.get("foreground_coordinates", {}).items()
        }
        thick = payload.get("thick_axis")
        return cls(
            case_id=str(payload.get("case_id", "")),
            meta=ImageMeta.from_json(payload["meta"]),
            crop_box=CropBox.from_json(payload["crop_box"]),
            shape_after_crop=tuple(int(v) for v in payload["shape_after_crop"]),
            shape_after_resampling=tuple(int(v) for v in payload["shape_after_resampling"]),
            spacing_mm=tuple(float(v) for v in payload["spacing_mm"]),
            thick_axis=None if thick is None else int(thick),
            spec_hash=str(payload["spec_hash"]),
            class_voxel_counts={
                int(k): int(v) for k, v in payload.get("class_voxel_counts", {}).items()
            },
            foreground_coordinates=coordinates,
        )


@dataclass(frozen=True)
class PreprocessedCase:
    """One case ready for training or inference.

    Attributes:
        data: float32 (or float16) normalised image ``(C, Z, Y, X)`` at the target spacing.
        seg: int8 labels ``(1, Z, Y, X)``, -1 outside the nonzero region when cropped; None
            for an unlabelled input.
        properties: how to undo the preprocessing, and the foreground samples.
        body: bool ``(Z, Y, X)``, the body mask at the target spacing: training labels are
            -1 (ignored) outside it, so a prediction there is never learnt and must be read
            as background (:func:`autoseg.preprocessing.case.background_outside_body`).
            None when not cropped to the body, and for cases read back from a cache.
    """

    data: np.ndarray
    seg: np.ndarray | None
    properties: CaseProperties
    body: np.ndarray | None = None


def class_voxel_counts(seg: np.ndarray) -> dict[int, int]:
    """Voxels per label value >= 0 (the -1 'outside' marker is not a class)."""
    counts = np.bincount((seg.astype(np.int16) + 1).ravel())
    return {value - 1: int(n) for value, n in enumerate(counts) if value >= 1 and n > 0}


def case_seed(case_id: str) -> int:
    """A seed that depends only on the case id (stable across runs, machines, orderings)."""
    return zlib.crc32(case_id.encode())


def sample_foreground(
    seg: np.ndarray, max_samples: int, seed: int, counts: dict[int, int] | None = None
) -> dict[int, np.ndarray]:
    """Up to ``max_samples`` voxel coordinates per label value > 0, drawn without replacement.

    The sampler picks a foreground patch centre from these instead of scanning the whole
    label map at every iteration. Coordinates are sorted so the json is stable and readable.

    Args:
        seg: labels ``(Z, Y, X)``.
        max_samples: cap per class.
        seed: random seed (use :func:`case_seed`).
        counts: :func:`class_voxel_counts` of ``seg`` when already known.
        counts: :func:`class_voxel_counts` of ``seg`` when already known.

    Returns:
        ``{value: int64 array (N, 3) of (z, y, x)}`` for each value > 0 present.
    """
    rng = np.random.default_rng(seed)
    flat = seg.ravel()
    samples: dict[int, np.ndarray] = {}
    counts = class_voxel_counts(seg) if counts is None else counts
    for value in sorted(v for v in counts if v > 0):
        positions = np.flatnonzero(flat == value)
        if len(positions) > max_samples:
            positions = np.sort(rng.choice(positions, size=max_samples, replace=False))
        samples[value] = np.stack(np.unravel_index(positions, seg.shape), axis=1).astype(np.int64)
    return samples
