"""Typed records that cross stage boundaries: image geometry and cases.

Shapes and spacings are ``(z, y, x)``; affines are NIfTI-style (voxel ``(i, j, k)`` =
``(x, y, z)`` to RAS mm), see :mod:`autoseg`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

Matrix4 = tuple[tuple[float, float, float, float], ...]


def matrix_to_tuple(matrix: np.ndarray) -> Matrix4:
    """A 4x4 array as a nested tuple of Python floats (hashable, JSON-friendly)."""
    return tuple(tuple(float(v) for v in row) for row in np.asarray(matrix, dtype=np.float64))


@dataclass(frozen=True)
class ImageMeta:
    """Geometry of one image on disk: enough to write a result back in its exact frame.

    Attributes:
        shape: voxel counts ``(z, y, x)``.
        spacing_mm: voxel size ``(z, y, x)`` in millimetres.
        affine: 4x4 voxel-to-RAS matrix (the NIfTI sform when set, else the qform).
        qform: 4x4 qform matrix when the file has one that differs from ``affine``.
        qform_code: NIfTI qform code (0 when the format has none).
        sform_code: NIfTI sform code (0 when the format has none).
        source_format: ``nifti``, ``sitk`` (MHA/NRRD/...), ``png`` or ``npy``.
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    affine: Matrix4
    qform: Matrix4 | None = None
    qform_code: int = 1
    sform_code: int = 1
    source_format: str = "nifti"

    @property
    def affine_array(self) -> np.ndarray:
        return np.array(self.affine, dtype=np.float64)

    @property
    def qform_array(self) -> np.ndarray:
        return np.array(self.qform if self.qform is not None else self.affine, dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "spacing_mm": list(self.spacing_mm),
            "affine": [list(row) for row in self.affine],
            "qform": None if self.qform is None else [list(row) for row in self.qform],
            "qform_code": self.qform_code,
            "sform_code": self.sform_code,
            "source_format": self.source_format,
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> ImageMeta:
        qform = payload.get("qform")
        return cls(
            shape=tuple(int(v) for v in payload["shape"]),
            spacing_mm=tuple(float(v) for v in payload["spacing_mm"]),
            affine=matrix_to_tuple(np.array(payload["affine"])),
            qform=None if qform is None else matrix_to_tuple(np.array(qform)),
            qform_code=int(payload.get("qform_code", 1)),
            sform_code=int(payload.get("sform_code", 1)),
            source_format=payload.get("source_format", "nifti"),
        )


def meta_from_affine(
    shape_zyx: tuple[int, ...], affine: np.ndarray, source_format: str = "nifti"
) -> ImageMeta:
    """Build an :class:`ImageMeta` whose spacing is read off the affine's column norms."""
    spacing_xyz = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    return ImageMeta(
        shape=tuple(int(v) for v in shape_zyx),
        spacing_mm=tuple(float(v) for v in spacing_xyz[::-1]),
        affine=matrix_to_tuple(affine),
        source_format=source_format,
    )


def orientation_codes(affine: np.ndarray) -> str:
    """Where the voxel axes (i, j, k) point in RAS+ world space, e.g. ``"RAS"``, ``"LAS"``."""
    return "".join(code or "?" for code in nib.aff2axcodes(affine))


def geometry_mismatch(a: ImageMeta, b: ImageMeta, tolerance_mm: float = 1e-3) -> str | None:
    """Describe how two images' grids differ, or None when they share one grid.

    Affines are compared entry-wise with an absolute tolerance in mm: real datasets carry
    float noise between a scan and its mask (ISLES'22 differs by < 1e-7).
    """
    if tuple(a.shape) != tuple(b.shape):
        return f"shape {list(a.shape)} != {list(b.shape)} (z, y, x)"
    codes_a, codes_b = orientation_codes(a.affine_array), orientation_codes(b.affine_array)
    if codes_a != codes_b:
        # A flipped axis is a different mistake from a shifted origin: say which.
        return f"orientation differs ({codes_a} vs {codes_b})"
    difference = float(np.max(np.abs(a.affine_array - b.affine_array)))
    if difference > tolerance_mm:
        return f"affine differs by up to {difference:.4g} mm (tolerance {tolerance_mm:g})"
    return None


@dataclass(frozen=True)
class Case:
    """One case of a raw dataset: its channel files (in channel order) and label file."""

    case_id: str
    image_files: tuple[Path, ...]
    label_file: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
