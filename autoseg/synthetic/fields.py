"""Grids and smooth random fields for the synthetic data (no heavy full-resolution filtering).

Every random field is drawn on a coarse grid fixed in head coordinates (mm from the head
centre), smoothed there, and resampled to the target voxels with a separable cubic kernel.
That keeps one 1 mm volume fast (a few gathers per voxel instead of a 3D filter) and makes a
case's anatomy the same at every resolution. Lesions are too (their centres are chosen on a
fixed grid, their shapes drawn in mm; :mod:`autoseg.synthetic.lesions`): only the voxel noise
depends on the spacing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

FIELD_HALF_WIDTH_MM = 140.0  # coarse fields cover the head centre +- this in every axis


@dataclass(frozen=True)
class Grid:
    """A voxel grid with an axis-aligned RAS affine.

    Attributes:
        shape: voxel counts ``(z, y, x)``.
        spacing_mm: voxel size ``(z, y, x)``.
        origin_mm: RAS position ``(x, y, z)`` of voxel ``(0, 0, 0)``.
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]

    def axis_mm(self, axis: int) -> np.ndarray:
        """World coordinates of the voxel centres along array axis ``axis`` (0 = z)."""
        origin = self.origin_mm[2 - axis]
        return origin + self.spacing_mm[axis] * np.arange(self.shape[axis], dtype=np.float64)

    def world_zyx(self, voxel_zyx: np.ndarray) -> np.ndarray:
        """RAS mm ``(z, y, x)`` of continuous voxel coordinates ``(z, y, x)``."""
        return np.asarray(self.origin_mm[::-1]) + np.asarray(voxel_zyx) * self.spacing_mm

    def voxel_zyx(self, world_zyx: np.ndarray) -> np.ndarray:
        """Continuous voxel coordinates ``(z, y, x)`` of RAS mm ``(z, y, x)``."""
        return (np.asarray(world_zyx) - np.asarray(self.origin_mm[::-1])) / self.spacing_mm

    def affine(self) -> np.ndarray:
        """The NIfTI voxel ``(i, j, k)`` -> RAS affine (diagonal, no rotation)."""
        matrix = np.diag([*self.spacing_mm[::-1], 1.0])
        matrix[:3, 3] = self.origin_mm
        return matrix

    def crop(self, box: tuple[slice, slice, slice]) -> Grid:
        """The sub-grid of the voxels in ``box`` (``(z, y, x)`` slices with explicit bounds)."""
        starts = np.array([b.start for b in box], dtype=np.float64)
        origin = np.asarray(self.origin_mm) + (starts * np.asarray(self.spacing_mm))[::-1]
        return Grid(
            shape=tuple(int(b.stop - b.start) for b in box),
            spacing_mm=self.spacing_mm,
            origin_mm=tuple(float(v) for v in origin),
        )

    def box_around(
        self, center_mm: tuple[float, float, float], half_mm: tuple[float, float, float]
    ) -> tuple[slice, slice, slice]:
        """Voxel slices ``(z, y, x)`` covering RAS ``center_mm +- half_mm`` (both x, y, z)."""
        box = []
        for axis in range(3):
            c, h = center_mm[2 - axis], half_mm[2 - axis]
            low = np.floor((c - h - self.origin_mm[2 - axis]) / self.spacing_mm[axis])
            high = np.ceil((c + h - self.origin_mm[2 - axis]) / self.spacing_mm[axis]) + 1
            low, high = (
                int(np.clip(low, 0, self.shape[axis])),
                int(np.clip(high, 0, self.shape[axis])),
            )
            box.append(slice(low, max(low, high)))
        return tuple(box)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing_mm))


def grid_covering(
    center_mm: tuple[float, float, float],
    extent_mm: tuple[float, float, float],
    spacing_mm: tuple[float, float, float],
) -> Grid:
    """A grid of ``spacing_mm`` (z, y, x) centred on ``center_mm`` (x, y, z) spanning ``extent_mm``.

    ``extent_mm`` is (x, y, z) like the centre; the voxel count is rounded up so the field of
    view is never smaller than asked.
    """
    spacing_xyz = np.asarray(spacing_mm[::-1], dtype=np.float64)
    counts_xyz = np.ceil(np.asarray(extent_mm) / spacing_xyz).astype(int)
    origin = np.asarray(center_mm) - spacing_xyz * (counts_xyz - 1) / 2.0
    return Grid(
        shape=tuple(int(v) for v in counts_xyz[::-1]),
        spacing_mm=tuple(float(v) for v in spacing_mm),
        origin_mm=tuple(float(v) for v in origin),
    )


@dataclass(frozen=True)
class CoarseField:
    """A smooth random field sampled every ``step_mm`` over the head box, unit variance."""

    values: np.ndarray  # (z, y, x) coarse samples
    step_mm: float
    half_width_mm: float


def coarse_field(
    rng: np.random.Generator,
    step_mm: float,
    sigma_mm: float,
    half_width_mm: float = FIELD_HALF_WIDTH_MM,
) -> CoarseField:
    """Draw white noise on the coarse head box and smooth it to correlation length ~sigma_mm.

    Positions beyond ``half_width_mm`` from the head centre take the value at the box edge;
    a field only needed inside the brain can use a smaller (cheaper) box.
    """
    count = int(np.ceil(2 * half_width_mm / step_mm)) + 1
    noise = rng.standard_normal((count, count, count))
    smooth = ndimage.gaussian_filter(noise, sigma_mm / step_mm, mode="wrap")
    smooth /= max(float(smooth.std()), 1e-12)
    return CoarseField(smooth.astype(np.float32), step_mm, half_width_mm)


def _keys_weights(fraction: np.ndarray) -> np.ndarray:
    """Catmull-Rom cubic weights for taps -1, 0, 1, 2 at fractional offsets (n,) -> (n, 4)."""
    f = fraction[:, None]
    taps = np.abs(f - np.array([-1.0, 0.0, 1.0, 2.0]))
    near = 1.5 * taps**3 - 2.5 * taps**2 + 1.0
    far = -0.5 * taps**3 + 2.5 * taps**2 - 4.0 * taps + 2.0
    return np.where(taps <= 1.0, near, np.where(taps < 2.0, far, 0.0)).astype(np.float32)


def _resample_axis(
    values: np.ndarray, axis: int, positions_mm: np.ndarray, field: CoarseField
) -> np.ndarray:
    """Cubic interpolation of ``values`` along one axis at head-frame positions (mm)."""
    t = (positions_mm + field.half_width_mm) / field.step_mm
    base = np.floor(t).astype(int)
    weights = _keys_weights(t - base)
    last = values.shape[axis] - 1
    shape = [1] * values.ndim
    shape[axis] = len(positions_mm)
    out = None
    for tap in range(4):
        index = np.clip(base + tap - 1, 0, last)
        term = np.take(values, index, axis=axis) * weights[:, tap].reshape(shape)
        out = term if out is None else out + term
    return out


def sample_field(
    field: CoarseField, z_mm: np.ndarray, y_mm: np.ndarray, x_mm: np.ndarray
) -> np.ndarray:
    """Evaluate a coarse field on the separable grid ``z_mm x y_mm x x_mm`` (head frame).

    Returns:
        float32 array ``(len(z_mm), len(y_mm), len(x_mm))``.
    """
    out = field.values
    for axis, positions in enumerate((z_mm, y_mm, x_mm)):
        out = _resample_axis(out, axis, np.asarray(positions, dtype=np.float64), field)
    return out.astype(np.float32, copy=False)


def rician(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude MR noise: |signal + complex Gaussian| (Rician; ~Gaussian where bright)."""
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    imaginary = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.sqrt(real * real + imaginary * imaginary)
