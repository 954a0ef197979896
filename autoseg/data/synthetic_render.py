"""Modality contrast for the synthetic head: T1w MRI, non-contrast CT, diffusion (DWI b1000).

Each renderer maps tissue labels to mean intensities, blurs the edges like a scanner's
point spread, applies a smooth gain (bias) field and adds the modality's noise. Lesion
contrast is deliberately clear (the synthetic data must be learnable in minutes) but varies
per case with :attr:`LesionPlan.contrast`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from autoseg.data.synthetic_anatomy import (
    BONE,
    CSF,
    DEEP_GM,
    GM,
    LESION,
    SCALP,
    WM,
    Anatomy,
    AnatomyPlan,
)
from autoseg.data.synthetic_fields import Grid, coarse_field, partial_volume, rician, sample_field

Center = tuple[float, float, float]

T1_MEANS = {CSF: 30.0, GM: 75.0, WM: 110.0, DEEP_GM: 88.0}
CT_HU = {0: -1000.0, CSF: 6.0, GM: 38.0, WM: 28.0, DEEP_GM: 35.0, BONE: 1100.0, SCALP: 35.0}
DWI_MEANS = {CSF: 25.0, GM: 115.0, WM: 100.0, DEEP_GM: 110.0}
CT_WINDOW_HU = (0.0, 80.0)  # brain window: level 40, width 80


def _lookup(labels: np.ndarray, means: dict[int, float]) -> np.ndarray:
    table = np.zeros(256, dtype=np.float32)
    for label, value in means.items():
        table[label] = value
    return table[labels]


def _bias(grid: Grid, center_mm: Center, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A smooth multiplicative gain, exp(strength * unit field): ~+-strength over the head."""
    field = coarse_field(rng, 20.0, 45.0)
    axes = [grid.axis_mm(axis) - center_mm[2 - axis] for axis in range(3)]
    return np.exp(strength * sample_field(field, *axes))


def lesion_t1(plan: AnatomyPlan) -> float:
    """T1 lesion intensity: between CSF and GM (hypointense), closer to CSF when conspicuous."""
    contrast = plan.lesion.contrast if plan.lesion else 0.5
    return T1_MEANS[CSF] + (T1_MEANS[GM] - T1_MEANS[CSF]) * (0.55 - 0.3 * contrast)


def render_t1(
    anatomy: Anatomy,
    center_mm: Center,
    plan: AnatomyPlan,
    rngs: dict[str, np.random.Generator],
    gain: float = 1.0,
) -> np.ndarray:
    """Skull-stripped T1w image (float32, zero outside the brain), WM > GM > lesion > CSF."""
    grid = anatomy.box_grid
    image = _lookup(anatomy.labels, {**T1_MEANS, LESION: lesion_t1(plan)})
    image = partial_volume(image, grid.spacing_mm)
    image *= _bias(grid, center_mm, rngs["bias"], 0.12) * np.float32(gain)
    image = rician(rngs["noise"], image, 0.035 * T1_MEANS[WM] * gain)
    image[~anatomy.brain] = 0.0
    return anatomy.full(image.astype(np.float32, copy=False), 0.0)


def lesion_hu(plan: AnatomyPlan) -> float:
    """Acute ischaemia on CT: hypodense, a clear 8-16 HU below white matter."""
    contrast = plan.lesion.contrast if plan.lesion else 0.5
    return CT_HU[WM] - 8.0 - 8.0 * contrast


def render_ct_hu(
    anatomy: Anatomy, plan: AnatomyPlan, rngs: dict[str, np.random.Generator]
) -> np.ndarray:
    """CT in Hounsfield units (float32), air outside the head, Gaussian quantum noise."""
    image = _lookup(anatomy.labels, {**CT_HU, LESION: lesion_hu(plan)})
    image = partial_volume(image, anatomy.grid.spacing_mm)
    image += 3.0 * rngs["noise"].standard_normal(image.shape, dtype=np.float32)
    return anatomy.full(image, CT_HU[0])


def rotate_in_plane(volume: np.ndarray, angle_deg: float, order: int, fill: float) -> np.ndarray:
    """Rotate every axial slice ``(Y, X)`` of ``(Z, Y, X)`` about the slice centre."""
    angle = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    center = (np.asarray(volume.shape[1:]) - 1) / 2.0
    matrix = np.eye(3)
    matrix[1:, 1:] = rotation
    offset = np.zeros(3)
    offset[1:] = center - rotation @ center
    return ndimage.affine_transform(volume, matrix, offset, order=order, cval=fill)


def window_uint8(hu: np.ndarray, window: tuple[float, float] = CT_WINDOW_HU) -> np.ndarray:
    """Map HU to 8-bit grey with a display window (bone saturates white, air black)."""
    low, high = window
    scaled = np.clip((hu - low) / (high - low), 0.0, 1.0) * 255.0
    return np.round(scaled).astype(np.uint8)


def lesion_dwi(plan: AnatomyPlan) -> float:
    """Restricted diffusion: the lesion is 2-3.2x brighter than white matter at b1000."""
    contrast = plan.lesion.contrast if plan.lesion else 0.5
    return DWI_MEANS[WM] * (2.0 + 1.2 * contrast)


def render_dwi(
    anatomy: Anatomy, center_mm: Center, plan: AnatomyPlan, rngs: dict[str, np.random.Generator]
) -> np.ndarray:
    """DWI b1000 magnitude (float32): bone and fat-suppressed scalp dark, Rician noise floor."""
    image = _lookup(anatomy.labels, {**DWI_MEANS, LESION: lesion_dwi(plan)})
    image = partial_volume(image, anatomy.grid.spacing_mm)
    image *= _bias(anatomy.box_grid, center_mm, rngs["bias"], 0.15)
    signal = anatomy.full(image, 0.0)  # the noise floor covers the whole field of view
    return rician(rngs["noise"], signal, 6.0).astype(np.float32, copy=False)
