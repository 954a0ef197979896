"""Synthetic stroke datasets written in the layouts real ones come in (``autoseg_synth``).

Kinds:
    ``atlas``: T1w MRI of the whole head (skull, scalp, a noisy background, as ATLAS v2.0
        ships it; ``skull_stripped`` for the brain alone) with hypointense chronic lesions,
        ATLAS v2.0 layout (BIDS tree, or ``layout="flat"`` Images/Masks folders),
        MNI152NLin2009aSym grid.
    ``ct-png``: thick-slice non-contrast CT patients as folders of PNG slices (8-bit brain
        window, or 16-bit pseudo-HU with ``png_bits=16``) with 0/255 masks, head slightly
        rotated in-plane.
    ``dwi``: DWI b1000 and ADC volumes with acute lesions (bright on DWI, dark on ADC) as
        ``.npy`` + JSON spacing sidecars (``layout="mixed"`` writes every third case as
        ``.nii.gz``).

Every kind draws from the same harder lesion model (:mod:`autoseg.synthetic.lesions`:
0.05-150 ml, several lesions per case, cortical and periventricular ones, graded cores and
faint rims), varied anatomy, and site looks (:func:`~autoseg.synthetic.render.site_look`)
that change gain, bias, noise, contrast and blur every few subjects.

A case depends only on ``(seed, kind, split, case index)``: ``cases=5`` writes exactly the
first five cases of ``cases=20``, byte for byte. Arrays are ``(Z, Y, X)``, spacings
``(z, y, x)`` mm, affines RAS (see :mod:`autoseg`).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from autoseg.core.paths import ensure_writable_dir
from autoseg.synthetic.anatomy import (
    WM,
    Anatomy,
    AnatomyPlan,
    build_anatomy,
    draw_plan,
)
from autoseg.synthetic.fields import Grid, grid_covering
from autoseg.synthetic.lesions import ACUTE_VOLUMES, CHRONIC_VOLUMES
from autoseg.synthetic.render import (
    BACKGROUNDS,
    CT_HU,
    T1_MEANS,
    SiteLook,
    pseudo_hu_uint16,
    render_ct_hu,
    render_dwi,
    render_t1,
    rotate_in_plane,
    set_background,
    site_look,
    window_uint8,
)
from autoseg.synthetic.writers import (
    SyntheticCase,
    SynthOptions,
    atlas_image_path,
    atlas_mask_path,
    atlas_site,
    atlas_subject,
    write_atlas_case,
    write_ct_case,
    write_dwi_case,
)

KINDS = ("atlas", "ct-png", "dwi")
SYNTHETIC_KINDS = KINDS  # the name the CLI imports
DEFAULT_OPTIONS = SynthOptions()
SIZES = ("tiny", "small", "full")
LAYOUTS = {"atlas": ("bids", "flat"), "ct-png": ("png",), "dwi": ("npy", "mixed", "nifti")}
_KIND_CODES = {"atlas": 1, "ct-png": 2, "dwi": 3}
_STREAMS = ("plan", "shape", "folds", "lesions", "bias", "noise", "pose")

ATLAS_CENTER_MM = (0.0, -17.0, 12.0)  # brain centre in MNI152 RAS millimetres
ATLAS_ORIGIN_MM = (-98.0, -134.0, -72.0)  # RAS of voxel (0, 0, 0), as in MNI152NLin2009aSym
ATLAS_SHAPE_1MM = (189, 233, 197)  # (z, y, x)
ATLAS_SPACING = {"tiny": 4.0, "small": 2.0, "full": 1.0}
CT_PIXELS = {"tiny": 48, "small": 128, "full": 256}
CT_SLICE_MM = {"tiny": 10.0, "small": 5.0, "full": 5.0}
CT_FOV_MM = 240.0
DWI_SPACING = {"tiny": (8.0, 4.0, 4.0), "small": (5.0, 2.0, 2.0), "full": (5.0, 1.5, 1.5)}
DWI_FOV_MM = (224.0, 224.0, 140.0)  # (x, y, z)


def list_kinds() -> list[str]:
    """The synthetic dataset kinds :func:`synthesize` can write."""
    return list(KINDS)


def case_rngs(seed: int, kind: str, split: int, index: int) -> dict[str, np.random.Generator]:
    """Independent generators for one case; each stream is used for one purpose only.

    Splitting streams keeps the anatomy identical at every grid size (the voxel noise, whose
    draw count depends on the grid, has its own stream).
    """
    sequence = np.random.SeedSequence([int(seed), _KIND_CODES[kind], int(split), int(index)])
    return {
        name: np.random.default_rng(child)
        for name, child in zip(_STREAMS, sequence.spawn(len(_STREAMS)), strict=True)
    }


def case_plan(
    kind: str, seed: int, index: int, split: int = 0, empty_fraction: float = 0.05
) -> AnatomyPlan:
    """The scalar plan of one case (lesion side, volume fraction, ...) without rendering it."""
    volumes = CHRONIC_VOLUMES if kind == "atlas" else ACUTE_VOLUMES
    return draw_plan(case_rngs(seed, kind, split, index)["plan"], empty_fraction, volumes)


def atlas_grid(size: str = "small", spacing_mm: float | None = None) -> Grid:
    """The MNI152NLin2009aSym field of view (197x233x189 mm) at an isotropic spacing."""
    spacing = float(spacing_mm if spacing_mm is not None else ATLAS_SPACING[size])
    shape = tuple(int(np.ceil((n - 1) / spacing)) + 1 for n in ATLAS_SHAPE_1MM)
    return Grid(shape, (spacing, spacing, spacing), ATLAS_ORIGIN_MM)


def atlas_case(
    seed: int, index: int, options: SynthOptions = DEFAULT_OPTIONS, split: int = 0
) -> SyntheticCase:
    """Render ATLAS-like case ``index``: skull-stripped T1w on the MNI grid (float32)."""
    spacing = options.spacing_mm[0] if options.spacing_mm else None
    grid = atlas_grid(options.size, spacing)
    rngs = case_rngs(seed, "atlas", split, index)
    plan = draw_plan(rngs["plan"], options.empty_fraction, CHRONIC_VOLUMES)
    anatomy = build_anatomy(grid, ATLAS_CENTER_MM, plan, rngs, with_skull=True)
    look = _look(seed, "atlas", index, split, rngs)
    image = render_t1(anatomy, ATLAS_CENTER_MM, rngs, look, options.skull_stripped)
    if not options.skull_stripped:
        head = anatomy.full(anatomy.labels > 0, False)
        wm = T1_MEANS[WM] * look.gain
        image = set_background(image, head, options.background, rngs["noise"], wm)
    return _case(image, anatomy, plan)


def _look(seed: int, kind: str, index: int, split: int, rngs: dict) -> SiteLook:
    """The case's site look, with a little per-scan gain jitter."""
    look = site_look(seed, _KIND_CODES[kind], atlas_site(index, split))
    return replace(look, gain=look.gain * float(rngs["pose"].uniform(0.95, 1.05)))


def _case(image: np.ndarray, anatomy: Anatomy, plan: AnatomyPlan) -> SyntheticCase:
    mask = anatomy.full(anatomy.lesion.astype(np.uint8), 0)
    return SyntheticCase(image, mask, anatomy.grid, plan, anatomy.full(anatomy.labels, 0))


def ct_grid(options: SynthOptions, rng: np.random.Generator) -> tuple[Grid, float]:
    """A patient's CT grid (slices cover the head, start varies) and its in-plane rotation."""
    if options.spacing_mm is not None:
        slice_mm, pixel_mm = options.spacing_mm[0], options.spacing_mm[2]
    else:
        slice_mm, pixel_mm = CT_SLICE_MM[options.size], CT_FOV_MM / CT_PIXELS[options.size]
    coverage_mm = rng.uniform(135.0, 155.0)
    center = (
        ATLAS_CENTER_MM[0] + rng.uniform(-4, 4),
        ATLAS_CENTER_MM[1] + rng.uniform(-6, 6),
        ATLAS_CENTER_MM[2] + rng.uniform(-5, 5),
    )
    extent = (CT_FOV_MM, CT_FOV_MM, coverage_mm)
    angle = float(rng.uniform(3.0, 9.0) * rng.choice([-1.0, 1.0]))
    return grid_covering(center, extent, (slice_mm, pixel_mm, pixel_mm)), angle


def ct_case(
    seed: int, index: int, options: SynthOptions = DEFAULT_OPTIONS, split: int = 0
) -> tuple[SyntheticCase, float]:
    """Render CT patient ``index`` as PNG-ready slices ``(Z, Y, X)`` and its mask.

    Returns:
        The case (``image`` uint8 brain window, or uint16 pseudo-HU when
        ``options.png_bits`` is 16; ``mask`` uint8 {0, 1}; both rotated) and the in-plane
        rotation in degrees.
    """
    rngs = case_rngs(seed, "ct-png", split, index)
    plan = draw_plan(rngs["plan"], options.empty_fraction)
    grid, angle = ct_grid(options, rngs["pose"])
    anatomy = build_anatomy(grid, ATLAS_CENTER_MM, plan, rngs, with_skull=True)
    look = site_look(seed, _KIND_CODES["ct-png"], atlas_site(index, split))
    hu = rotate_in_plane(render_ct_hu(anatomy, rngs, look), angle, order=1, fill=CT_HU[0])
    lesion = anatomy.full(anatomy.lesion.astype(np.float32), 0.0)
    mask = rotate_in_plane(lesion, angle, order=1, fill=0.0) > 0.5
    tissue = rotate_in_plane(anatomy.full(anatomy.labels, 0), angle, order=0, fill=0.0)
    pixels = pseudo_hu_uint16(hu) if options.png_bits == 16 else window_uint8(hu)
    return SyntheticCase(pixels, mask.astype(np.uint8), grid, plan, tissue), angle


def dwi_case(
    seed: int, index: int, options: SynthOptions = DEFAULT_OPTIONS, split: int = 0
) -> SyntheticCase:
    """Render DWI case ``index``: b1000 (``image``) and ADC (``extra["adc"]``), float32,
    thick slices; lesions bright on DWI, dark on ADC."""
    spacing = options.spacing_mm or DWI_SPACING[options.size]
    rngs = case_rngs(seed, "dwi", split, index)
    plan = draw_plan(rngs["plan"], options.empty_fraction)
    grid = grid_covering(ATLAS_CENTER_MM, DWI_FOV_MM, tuple(float(s) for s in spacing))
    anatomy = build_anatomy(grid, ATLAS_CENTER_MM, plan, rngs, with_skull=True)
    look = _look(seed, "dwi", index, split, rngs)
    dwi, adc = render_dwi(anatomy, ATLAS_CENTER_MM, rngs, look)
    return replace(_case(dwi, anatomy, plan), extra={"adc": adc})


def _check_arguments(kind: str, cases: int, test_cases: int, options: SynthOptions) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic kind '{kind}' (known: {', '.join(KINDS)})")
    if options.size not in SIZES:
        raise ValueError(f"unknown size '{options.size}' (known: {', '.join(SIZES)})")
    if options.layout not in (None, *LAYOUTS[kind]):
        known = ", ".join(LAYOUTS[kind])
        raise ValueError(f"unknown layout '{options.layout}' for {kind} (known: {known})")
    if options.background not in BACKGROUNDS:
        raise ValueError(
            f"unknown background '{options.background}' (known: {', '.join(BACKGROUNDS)})"
        )
    if options.png_bits not in (8, 16):
        raise ValueError(f"png_bits must be 8 or 16, got {options.png_bits}")
    if cases < 0 or test_cases < 0:
        raise ValueError("cases and test_cases must be >= 0")
    if options.spacing_mm is not None and (
        len(options.spacing_mm) != 3 or min(options.spacing_mm) <= 0
    ):
        raise ValueError(
            f"spacing_mm must be three positive numbers (z, y, x), got {options.spacing_mm}"
        )


def _write_case(
    kind: str, dest: Path, seed: int, index: int, split: int, opts: SynthOptions
) -> list[Path]:
    if kind == "atlas":
        return write_atlas_case(dest, atlas_case(seed, index, opts, split), index, split, opts)
    if kind == "ct-png":
        return write_ct_case(dest, ct_case(seed, index, opts, split)[0], index, split, opts)
    return write_dwi_case(dest, dwi_case(seed, index, opts, split), index, split, opts)


def synthesize(
    kind: str,
    dest: str | os.PathLike,
    cases: int,
    seed: int = 0,
    size: str = "small",
    layout: str | None = None,
    test_cases: int = 0,
    progress: bool = True,
    spacing_mm: tuple[float, float, float] | None = None,
    mask_dtype: str = "uint8",
    mask_scale: int = 1,
    empty_fraction: float = 0.05,
    skull_stripped: bool = False,
    png_bits: int = 8,
    background: str = "rician",
) -> list[Path]:
    """Write a synthetic dataset of ``kind`` under ``dest``; returns every file written.

    Args:
        kind: one of :data:`KINDS`.
        dest: output folder (created; existing files of the same names are replaced).
        cases: number of labelled training cases.
        seed: base seed; case ``i`` depends only on ``(seed, kind, i)``.
        size: ``tiny`` (unit tests), ``small`` (2 mm / 128 px, the demo) or ``full``.
        layout: ``bids`` | ``flat`` (atlas), ``png`` (ct-png), ``npy`` | ``mixed`` | ``nifti``
            (dwi); None picks the first.
        test_cases: extra unlabelled cases under ``dest/Testing`` (images only).
        progress: show a progress bar over cases.
        spacing_mm: explicit ``(z, y, x)`` spacing overriding ``size`` (atlas uses z for all).
        mask_dtype, mask_scale: stored mask type and foreground value (e.g. 255).
        empty_fraction: probability that a case has no lesion.
        skull_stripped: atlas only: the brain alone on a zero background.
        png_bits: ct-png only: 8 (brain window) or 16 (pseudo-HU, HU + 1024).
        background: atlas only: the air around the head, ``rician`` (magnitude noise),
            ``zero`` or ``gaussian`` (zero-mean noise; see
            :func:`~autoseg.synthetic.render.set_background`).

    Raises:
        ValueError: unknown kind, size or layout (listing the known ones), bad counts.
    """
    spacing = tuple(float(s) for s in spacing_mm) if spacing_mm is not None else None
    options = SynthOptions(
        size,
        spacing,
        layout,
        mask_dtype,
        mask_scale,
        empty_fraction,
        skull_stripped,
        png_bits,
        background,
    )
    _check_arguments(kind, cases, test_cases, options)
    ensure_writable_dir(dest, "destination folder")
    options = replace(options, layout=layout or LAYOUTS[kind][0])
    jobs = [(0, i) for i in range(cases)] + [(1, i) for i in range(test_cases)]
    written: list[Path] = []
    for split, index in tqdm(jobs, desc=f"synth {kind}", unit="case", disable=not progress):
        written.extend(_write_case(kind, Path(dest), seed, index, split, options))
    return written


__all__ = [
    "KINDS",
    "LAYOUTS",
    "SIZES",
    "SYNTHETIC_KINDS",
    "SynthOptions",
    "SyntheticCase",
    "atlas_case",
    "atlas_grid",
    "atlas_image_path",
    "atlas_mask_path",
    "atlas_subject",
    "case_plan",
    "case_rngs",
    "ct_case",
    "dwi_case",
    "list_kinds",
    "synthesize",
]
