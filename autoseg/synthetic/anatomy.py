"""A procedural head: brain tissue labels, optional skull and scalp, and stroke lesions.

The brain is an egg-shaped ellipsoid whose surface is pushed in and out by a smooth random
field (shape variation between cases). Below the surface lie a CSF rim, a grey-matter ribbon
folded by sulci (thin CSF sheets along the zero set of a band-limited noise field, lined with
grey matter, with white-matter gyral cores between them), the interhemispheric fissure, deep
grey nuclei and two lateral ventricles. Brain size and atrophy (wider CSF spaces, larger
ventricles, thinner cortex) vary between cases. Lesions come from
:mod:`autoseg.synthetic.lesions`. Modality contrast is added later
(:mod:`autoseg.synthetic.render`); this module only decides which tissue is where.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from autoseg.synthetic.fields import (
    CoarseField,
    Grid,
    coarse_field,
    grid_covering,
    sample_field,
)
from autoseg.synthetic.lesions import (
    ACUTE_VOLUMES,
    LesionMaps,
    LesionPlan,
    LesionVolumes,
    Room,
    Surroundings,
    draw_lesion_plan,
    place_lesions,
)

BACKGROUND, CSF, GM, WM, DEEP_GM, LESION, BONE, SCALP = range(8)
TISSUE_NAMES = ("background", "csf", "gm", "wm", "deep_gm", "lesion", "bone", "scalp")
CSF_RIM_MM = 1.2
SHAPE_CLIP = 3.0  # surface and skull noise are clipped at 3 sigma so the head box is known


@dataclass(frozen=True)
class AnatomyPlan:
    """The scalar draws of one case (sizes in mm); fields are drawn separately.

    Attributes:
        semi_axes_mm: brain half-extents (x, y, z), brain size varies by ~+-10 %.
        atrophy: 0..1; widens the CSF rim and the sulci, enlarges the ventricles and thins
            the cortex, as age and chronic stroke do.
        ventricle_scale: lateral ventricle size (grows with atrophy).
    """

    semi_axes_mm: tuple[float, float, float]  # (x, y, z)
    shape_amplitude: float
    ventricle_scale: float
    gm_thickness_mm: float
    sulcal_depth_mm: float
    lesion: LesionPlan | None
    atrophy: float = 0.0


def draw_plan(
    rng: np.random.Generator,
    empty_fraction: float = 0.05,
    volumes: LesionVolumes = ACUTE_VOLUMES,
) -> AnatomyPlan:
    """Draw one case's anatomy and lesion plan (always the same number of draws per case)."""
    scale = rng.uniform(0.9, 1.08)
    semi_axes = tuple(scale * rng.uniform(low, low + 6.0) for low in (62.0, 80.0, 55.0))
    shape_amplitude = rng.uniform(0.025, 0.05)
    atrophy = float(rng.beta(1.5, 3.0))
    ventricle_scale = rng.uniform(0.8, 1.2) * (1.0 + 1.1 * atrophy)
    gm_thickness = rng.uniform(2.8, 3.8) * (1.0 - 0.2 * atrophy)
    sulcal_depth = rng.uniform(12.0, 18.0)
    lesion_free = rng.random() < empty_fraction
    lesion = draw_lesion_plan(rng, volumes)
    return AnatomyPlan(
        tuple(float(v) for v in semi_axes),
        float(shape_amplitude),
        float(ventricle_scale),
        float(gm_thickness),
        float(sulcal_depth),
        None if lesion_free else lesion,
        atrophy,
    )


@dataclass
class Anatomy:
    """Tissue labels of one case, computed only in the box around the head.

    Attributes:
        grid: the full target grid.
        box: ``(z, y, x)`` slices of ``grid`` that hold the head; everything outside is
            background (air), so renderers work on the box alone.
        labels: uint8 tissue codes (``CSF``, ``GM``, ... ``LESION``) in the box.
        brain: bool, inside the brain surface (the skull-stripping mask), in the box.
        lesion: bool lesion mask in the box.
        base: the tissue codes the lesions replaced (``labels`` without ``LESION``).
        lesion_maps: the lesions' grading (strength, severity) in the box.
    """

    grid: Grid
    box: tuple[slice, slice, slice]
    labels: np.ndarray
    brain: np.ndarray
    lesion: np.ndarray
    base: np.ndarray
    lesion_maps: LesionMaps

    @property
    def box_grid(self) -> Grid:
        return self.grid.crop(self.box)

    def full(self, array: np.ndarray, fill: float = 0) -> np.ndarray:
        """Paste a box-sized array into a full-grid array filled with ``fill``."""
        out = np.full(self.grid.shape, fill, dtype=array.dtype)
        out[self.box] = array
        return out


def head_coordinates(grid: Grid, center_mm: tuple[float, float, float]) -> list[np.ndarray]:
    """Voxel-centre coordinates relative to the head centre, as broadcastable (z, y, x) axes."""
    axes = []
    for axis in range(3):
        values = (grid.axis_mm(axis) - center_mm[2 - axis]).astype(np.float32)
        shape = [1, 1, 1]
        shape[axis] = values.size
        axes.append(values.reshape(shape))
    return axes


def _depth_mm(plan: AnatomyPlan, coords: list[np.ndarray], shape_noise: np.ndarray) -> np.ndarray:
    """Approximate depth below the brain surface (mm; negative outside the brain)."""
    z, y, x = coords
    ax, ay, az = plan.semi_axes_mm
    ax_eff = ax * (1.0 - 0.07 * y / ay)  # wider at the back, like a real brain
    az_eff = np.where(z < 0, 0.88 * az, az).astype(np.float32)  # flatter base
    radius = np.sqrt((x / ax_eff) ** 2 + (y / ay) ** 2 + (z / az_eff) ** 2)
    surface = 1.0 + plan.shape_amplitude * np.clip(shape_noise, -SHAPE_CLIP, SHAPE_CLIP)
    return (surface - radius) * float(np.cbrt(ax * ay * az))


def _mostly_symmetric(field: CoarseField, axes_mm: list[np.ndarray]) -> np.ndarray:
    """Surface noise, mostly mirror-symmetric in x: registered brains are nearly symmetric."""
    z, y, x = axes_mm
    same = sample_field(field, z, y, x)
    mirrored = sample_field(field, z, y, -x)
    return 0.6 * (same + mirrored) + 0.3 * same


def _ellipsoid(
    coords: list[np.ndarray], center: tuple[float, float, float], radii: tuple[float, ...]
) -> np.ndarray:
    """Boolean ellipsoid (x, y, z centre and radii in head mm) on the broadcast grid."""
    z, y, x = coords
    return ((x - center[0]) / radii[0]) ** 2 + ((y - center[1]) / radii[1]) ** 2 + (
        (z - center[2]) / radii[2]
    ) ** 2 <= 1.0


def _ventricles(plan: AnatomyPlan, coords: list[np.ndarray]) -> np.ndarray:
    """Two lateral ventricles: curved, elongated front-to-back, larger in atrophic cases."""
    z, y, x = coords
    scale = plan.ventricle_scale
    bend = 14.0 - 0.011 * (y + 6.0) ** 2  # the horns curve downwards at both ends
    inside = np.zeros(np.broadcast_shapes(z.shape, y.shape, x.shape), dtype=bool)
    for side in (-1.0, 1.0):
        lateral = (np.abs(x - side * (4.0 + 3.5 * scale)) / (4.0 * scale)) ** 2
        along = ((y + 6.0) / 30.0) ** 2
        vertical = ((z - bend) / (6.0 * scale)) ** 2
        inside |= lateral + along + vertical <= 1.0
    return inside


def _deep_grey(coords: list[np.ndarray]) -> np.ndarray:
    """Thalami and lentiform nuclei as ellipsoids on both sides."""
    inside = np.zeros(np.broadcast_shapes(*(c.shape for c in coords)), dtype=bool)
    for side in (-1.0, 1.0):
        inside |= _ellipsoid(coords, (side * 11.0, -16.0, 4.0), (7.0, 12.0, 8.0))
        inside |= _ellipsoid(coords, (side * 24.0, 4.0, 2.0), (5.0, 13.0, 9.0))
    return inside


def _cortex(
    plan: AnatomyPlan, depth: np.ndarray, folds: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Grey-matter ribbon and CSF (rim, sulci, fissure) masks; both inside the brain.

    Atrophy widens the CSF rim, the sulci and the fissure (the brain shrinks from the skull).
    """
    gm_t = plan.gm_thickness_mm
    rim = CSF_RIM_MM + 2.0 * plan.atrophy
    sulcus = 0.2 + 0.25 * plan.atrophy
    half_fissure = 1.0 + 1.5 * plan.atrophy
    fold = np.abs(folds)
    sulcal = depth < plan.sulcal_depth_mm
    fissure = (np.abs(x) < half_fissure) & (depth < 30.0)
    csf = (depth < rim) | ((fold < sulcus) & sulcal) | fissure
    grey = (depth < rim + gm_t) | ((fold < sulcus + 0.6) & (depth < plan.sulcal_depth_mm + gm_t))
    grey |= (np.abs(x) < half_fissure + gm_t) & (depth < 30.0 + gm_t)
    return grey, csf


def _head_shells(depth: np.ndarray, thickness_noise: np.ndarray) -> np.ndarray:
    """Labels outside the brain: subarachnoid CSF, skull (thickness varies), scalp."""
    labels = np.zeros(depth.shape, dtype=np.uint8)
    bone_inner = -1.5
    bone_outer = bone_inner - 6.0 * (1.0 + 0.15 * np.clip(thickness_noise, -SHAPE_CLIP, SHAPE_CLIP))
    scalp_outer = bone_outer - 4.0
    labels[(depth <= 0) & (depth > bone_inner)] = CSF
    labels[(depth <= bone_inner) & (depth > bone_outer)] = BONE
    labels[(depth <= bone_outer) & (depth > scalp_outer)] = SCALP
    return labels


def brain_half_extent_mm(plan: AnatomyPlan) -> tuple[float, float, float]:
    """Half the size (x, y, z) of the box the brain always fits in (its surface noise is
    clipped at 3 sigma): the same at every grid spacing."""
    growth = 1.0 + SHAPE_CLIP * plan.shape_amplitude
    ax, ay, az = plan.semi_axes_mm
    return (ax * growth * 1.1, ay * growth, az * growth)


def head_box(
    grid: Grid, center_mm: tuple[float, float, float], plan: AnatomyPlan, with_skull: bool
) -> tuple[slice, slice, slice]:
    """The voxels that can hold head tissue."""
    margin = (1.5 + 6.0 * (1.0 + 0.15 * SHAPE_CLIP) + 4.0 if with_skull else 0.0) + 2.0
    half = tuple(h + margin for h in brain_half_extent_mm(plan))
    return grid.box_around(center_mm, half)


def build_anatomy(
    grid: Grid,
    center_mm: tuple[float, float, float],
    plan: AnatomyPlan,
    rngs: dict[str, np.random.Generator],
    with_skull: bool = False,
) -> Anatomy:
    """Label the voxels of ``grid`` for a head centred at RAS ``center_mm`` (x, y, z).

    Args:
        grid: target voxel grid.
        center_mm: RAS position of the head centre; the midline plane is ``x = center x``.
        plan: the case's scalar draws (:func:`draw_plan`).
        rngs: independent generators ``shape``, ``folds``, ``lesions`` (one stream each, so
            the anatomy does not depend on how many voxels the grid has).
        with_skull: add CSF, bone and scalp shells outside the brain.
    """
    box = head_box(grid, center_mm, plan, with_skull)
    sub = grid.crop(box)
    shape_field = coarse_field(rngs["shape"], 12.0, 20.0)
    fold_field = coarse_field(rngs["folds"], 2.5, 3.5, half_width_mm=108.0)  # brain only
    fields = (shape_field, fold_field)
    tissue = _tissue(sub, center_mm, plan, fields, with_skull)
    maps = LesionMaps.empty(sub.shape)
    if plan.lesion is not None:
        placement = placement_grid(center_mm, plan)
        placed = _tissue(placement, center_mm, plan, fields, with_skull=False)
        target = (sub, tissue.room())
        maps = place_lesions(
            plan.lesion, target, (placement, placed.surroundings()), rngs["lesions"]
        )
    labels = tissue.labels.copy()
    labels[maps.mask] = LESION
    return Anatomy(grid, box, labels, tissue.brain, maps.mask, tissue.labels, maps)


PLACEMENT_SPACING_MM = 2.0


def placement_grid(center_mm: tuple[float, float, float], plan: AnatomyPlan) -> Grid:
    """The grid lesion centres are chosen on, whatever the case is rendered at: so a case's
    lesions lie in the same place at 1 mm, 2 mm or in 6 mm slices."""
    half_x, half_y, half_z = brain_half_extent_mm(plan)
    spacing = PLACEMENT_SPACING_MM
    return grid_covering(center_mm, (2 * half_x, 2 * half_y, 2 * half_z), (spacing,) * 3)


@dataclass(frozen=True)
class _Tissue:
    """One grid's tissue labels before lesions, and what lesion placement needs of them."""

    grid: Grid
    labels: np.ndarray
    brain: np.ndarray
    depth_mm: np.ndarray
    ventricles: np.ndarray
    x_mm: np.ndarray

    def room(self) -> Room:
        """The voxels a lesion may take: brain tissue, not CSF (a lesion is damaged tissue;
        one grown over sulcal CSF looked like CSF)."""
        return Room(self.brain & (self.labels != CSF), self.x_mm)

    def surroundings(self) -> Surroundings:
        """The room, depth and distance to the ventricles (a distance transform, so only
        on the grid centres are chosen on)."""
        if self.ventricles.any():
            ventricle_mm = ndimage.distance_transform_edt(
                ~self.ventricles, sampling=self.grid.spacing_mm
            )
        else:
            ventricle_mm = np.full(self.brain.shape, np.inf)
        return Surroundings(self.room(), self.depth_mm, ventricle_mm.astype(np.float32))


def _tissue(
    sub: Grid,
    center_mm: tuple[float, float, float],
    plan: AnatomyPlan,
    fields: tuple[CoarseField, CoarseField],
    with_skull: bool,
) -> _Tissue:
    """Tissue labels of ``sub`` from the case's shape and fold fields."""
    shape_field, fold_field = fields
    coords = head_coordinates(sub, center_mm)
    axes_mm = [c.ravel() for c in coords]
    depth = _depth_mm(plan, coords, _mostly_symmetric(shape_field, axes_mm))
    brain = depth > 0
    grey, csf = _cortex(plan, depth, sample_field(fold_field, *axes_mm), coords[2])
    ventricles = _ventricles(plan, coords) & brain
    if with_skull:
        labels = _head_shells(depth, sample_field(shape_field, *[a * 1.7 for a in axes_mm]))
    else:
        labels = np.zeros(sub.shape, dtype=np.uint8)
    labels[brain] = WM
    labels[_deep_grey(coords) & brain] = DEEP_GM
    labels[grey & brain] = GM
    labels[(csf & brain) | ventricles] = CSF
    return _Tissue(sub, labels, brain, depth, ventricles, coords[2])
