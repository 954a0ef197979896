"""Modality contrast for the synthetic head: T1w MRI, non-contrast CT, DWI b1000 and ADC.

Each renderer maps tissue labels to mean intensities, grades the lesions into them (a core
that can reach the modality's extreme, a rim that fades into the surrounding tissue),
blurs edges like the scanner's point spread, and applies the acquisition site's look: a
smooth gain (bias) field, tissue contrast, noise and overall scale all differ per site, as
they do between the centres of a multi-site release.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from autoseg.synthetic.anatomy import (
    BONE,
    CSF,
    DEEP_GM,
    GM,
    SCALP,
    WM,
    Anatomy,
)
from autoseg.synthetic.fields import Grid, coarse_field, rician, sample_field

Center = tuple[float, float, float]

T1_MEANS = {CSF: 30.0, GM: 75.0, WM: 110.0, DEEP_GM: 88.0, BONE: 18.0, SCALP: 125.0}
CT_HU = {0: -1000.0, CSF: 6.0, GM: 38.0, WM: 28.0, DEEP_GM: 35.0, BONE: 1100.0, SCALP: 35.0}
DWI_MEANS = {CSF: 25.0, GM: 115.0, WM: 100.0, DEEP_GM: 110.0, SCALP: 20.0}
ADC_MEANS = {CSF: 3000.0, GM: 850.0, WM: 740.0, DEEP_GM: 780.0, SCALP: 900.0}  # 1e-6 mm²/s
CT_WINDOW_HU = (0.0, 80.0)  # brain window: level 40, width 80
PSEUDO_HU_OFFSET = 1024  # 16-bit CT PNGs store HU + 1024 (air 24, water 1024)


@dataclass(frozen=True)
class SiteLook:
    """How one acquisition site renders a head.

    Attributes:
        gain: overall intensity scale (MR units are arbitrary per scanner).
        bias: strength of the smooth multiplicative field (~+-bias over the head).
        noise: noise sigma as a fraction of white matter's intensity (MR) or in HU (CT).
        contrast: exponent on the tissue intensities relative to white matter (< 1 flatter).
        blur_mm: extra point-spread blur.
        offset_hu: CT calibration offset.
    """

    gain: float
    bias: float
    noise: float
    contrast: float
    blur_mm: float
    offset_hu: float = 0.0


def site_look(seed: int, kind_code: int, site: int) -> SiteLook:
    """The look of site ``site`` for a synthetic kind (a pure function of its arguments)."""
    rng = np.random.default_rng([int(seed), int(kind_code), 99, int(site)])
    return SiteLook(
        gain=float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))),
        bias=float(rng.uniform(0.06, 0.3)),
        noise=float(rng.uniform(0.02, 0.07)),
        contrast=float(rng.uniform(0.75, 1.25)),
        blur_mm=float(rng.uniform(0.4, 1.3)),
        offset_hu=float(rng.uniform(-3.0, 3.0)),
    )


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


def blur(image: np.ndarray, spacing_mm: tuple[float, ...], extra_mm: float) -> np.ndarray:
    """Point-spread blur of ~0.6 mm plus the site's own (skipped when well under a voxel)."""
    sigma = [np.hypot(0.6, extra_mm) / s for s in spacing_mm]
    if max(sigma) < 0.25:
        return image
    return ndimage.gaussian_filter(image, sigma, mode="nearest", truncate=3.0)


def graded(anatomy: Anatomy, means: dict[int, float], core: np.ndarray) -> np.ndarray:
    """Tissue means with every lesion voxel pulled towards its core value by its strength.

    Args:
        anatomy: labels, the tissue under each lesion and the lesion grading.
        means: mean intensity per tissue label.
        core: per-voxel core intensity (only read inside lesions).
    """
    image = _lookup(anatomy.base, means)
    strength = anatomy.lesion_maps.strength
    return (image + (core - image) * strength).astype(np.float32)


def _contrast(image: np.ndarray, reference: float, exponent: float) -> np.ndarray:
    """Stretch or flatten tissue contrast around ``reference`` (a site's T1 weighting)."""
    return (reference * np.power(np.maximum(image, 0.0) / reference, exponent)).astype(np.float32)


def t1_core(severity: np.ndarray) -> np.ndarray:
    """Chronic T1 lesion core: as dark as CSF when severe, between CSF and GM when mild."""
    return T1_MEANS[CSF] + (T1_MEANS[GM] - T1_MEANS[CSF]) * 0.75 * (1.0 - severity)


def render_t1(
    anatomy: Anatomy,
    center_mm: Center,
    rngs: dict[str, np.random.Generator],
    look: SiteLook,
    skull_stripped: bool = False,
) -> np.ndarray:
    """T1w image (float32): WM > GM > lesion rim > core >= CSF, a dark skull under bright
    scalp and a Rician noise floor in the air; ``skull_stripped`` zeroes all but the brain."""
    grid = anatomy.box_grid
    image = graded(anatomy, T1_MEANS, t1_core(anatomy.lesion_maps.severity))
    image = _contrast(image, T1_MEANS[WM], look.contrast)
    image = blur(image, grid.spacing_mm, look.blur_mm)
    image *= _bias(grid, center_mm, rngs["bias"], look.bias) * np.float32(look.gain)
    sigma = look.noise * T1_MEANS[WM] * look.gain
    if skull_stripped:
        image = rician(rngs["noise"], image, sigma)
        image[~anatomy.brain] = 0.0
        return anatomy.full(image.astype(np.float32, copy=False), 0.0)
    signal = anatomy.full(image.astype(np.float32, copy=False), 0.0)
    return rician(rngs["noise"], signal, sigma).astype(np.float32, copy=False)


BACKGROUNDS = ("rician", "zero", "gaussian")
GAUSSIAN_AIR_SIGMA = 0.15  # of white matter: a template with noise added, SNR about 7


def set_background(
    image: np.ndarray, head: np.ndarray, background: str, rng: np.random.Generator, wm: float
) -> np.ndarray:
    """The air of a rendered T1 as asked: ``rician`` (the scan's own magnitude noise, as
    rendered), ``zero`` (a masked or defaced export: exactly 0) or ``gaussian`` (zero-mean
    noise of :data:`GAUSSIAN_AIR_SIGMA` times white matter ``wm``, negative half included:
    a template with noise added, or a scan after intensity correction)."""
    if background == "rician":
        return image
    out = np.where(head, image, np.float32(0.0)).astype(np.float32)
    if background == "gaussian":
        noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(
            GAUSSIAN_AIR_SIGMA * wm
        )
        out[~head] = noise[~head]
    return out


def ct_core(severity: np.ndarray) -> np.ndarray:
    """Acute ischaemia on CT: hypodense, 4 (subtle) to 14 HU below white matter."""
    return CT_HU[WM] - 4.0 - 10.0 * severity


def render_ct_hu(
    anatomy: Anatomy, rngs: dict[str, np.random.Generator], look: SiteLook
) -> np.ndarray:
    """CT in Hounsfield units (float32), air outside the head, Gaussian quantum noise of
    2-5 HU and a calibration offset per site."""
    image = graded(anatomy, CT_HU, ct_core(anatomy.lesion_maps.severity))
    image = blur(image, anatomy.grid.spacing_mm, look.blur_mm) + np.float32(look.offset_hu)
    sigma = 2.0 + 3.0 * (look.noise - 0.02) / 0.05
    image += sigma * rngs["noise"].standard_normal(image.shape, dtype=np.float32)
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


def pseudo_hu_uint16(hu: np.ndarray) -> np.ndarray:
    """HU as 16-bit PNG values (HU + 1024, clipped to 0..4095), as CT exports store them."""
    return np.clip(np.round(hu + PSEUDO_HU_OFFSET), 0, 4095).astype(np.uint16)


def dwi_core(severity: np.ndarray) -> np.ndarray:
    """Restricted diffusion: the core is 1.5x (faint) to 3x white matter at b1000."""
    return DWI_MEANS[WM] * (1.5 + 1.5 * severity)


def adc_core(severity: np.ndarray) -> np.ndarray:
    """Restricted diffusion on ADC: 75 % (faint) down to 45 % of white matter."""
    return ADC_MEANS[WM] * (0.75 - 0.3 * severity)


def render_dwi(
    anatomy: Anatomy, center_mm: Center, rngs: dict[str, np.random.Generator], look: SiteLook
) -> tuple[np.ndarray, np.ndarray]:
    """DWI b1000 magnitude with a Rician noise floor everywhere, and the ADC map computed
    from it (noisy, zero outside the head), both float32."""
    grid = anatomy.box_grid
    severity = anatomy.lesion_maps.severity
    dwi = blur(graded(anatomy, DWI_MEANS, dwi_core(severity)), grid.spacing_mm, look.blur_mm)
    adc = blur(graded(anatomy, ADC_MEANS, adc_core(severity)), grid.spacing_mm, look.blur_mm)
    dwi *= _bias(grid, center_mm, rngs["bias"], look.bias) * np.float32(look.gain)
    head = anatomy.labels > 0
    adc_noise = look.noise * ADC_MEANS[WM] * rngs["noise"].standard_normal(adc.shape)
    adc = np.where(head, np.maximum(adc + adc_noise.astype(np.float32), 0.0), 0.0)
    signal = anatomy.full(dwi.astype(np.float32, copy=False), 0.0)
    dwi = rician(rngs["noise"], signal, 0.06 * DWI_MEANS[WM] * look.gain)
    return dwi.astype(np.float32, copy=False), anatomy.full(adc.astype(np.float32), 0.0)
