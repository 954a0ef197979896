"""A procedural head: brain tissue labels, optional skull and scalp, and stroke lesions.

The brain is an egg-shaped ellipsoid whose surface is pushed in and out by a smooth random
field (shape variation between cases). Below the surface lie a CSF rim, a grey-matter ribbon
folded by sulci (thin CSF sheets along the zero set of a band-limited noise field, lined with
grey matter, with white-matter gyral cores between them), the interhemispheric fissure, deep
grey nuclei and two lateral ventricles. Lesions are irregular blobs, all in one hemisphere,
whose total volume is a set fraction of the brain volume. Modality contrast is added later
(:mod:`autoseg.data.synthetic_render`); this module only decides which tissue is where.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special

from autoseg.data.synthetic_fields import CoarseField, Grid, coarse_field, sample_field

BACKGROUND, CSF, GM, WM, DEEP_GM, LESION, BONE, SCALP = range(8)
TISSUE_NAMES = ("background", "csf", "gm", "wm", "deep_gm", "lesion", "bone", "scalp")
CSF_RIM_MM = 1.2
MIDLINE_MARGIN_MM = 2.0  # lesions keep this far from the midline plane (one hemisphere only)
SHAPE_CLIP = 3.0  # surface and skull noise are clipped at 3 sigma so the head box is known


@dataclass(frozen=True)
class LesionPlan:
    """How a case's lesions should turn out.

    Attributes:
        side: +1 for the right hemisphere (RAS +x), -1 for the left.
        volume_fraction: total lesion volume / brain volume.
        shares: fraction of the total volume of each lesion (sums to 1; 1 to 3 entries).
        contrast: 0..1, where the lesion intensity sits in its modality's range (0 = faint).
    """

    side: int
    volume_fraction: float
    shares: tuple[float, ...]
    contrast: float


@dataclass(frozen=True)
class LogUniformVolumes:
    """Total lesion volume as a fraction of the brain, log-uniform in ``[low, high]``."""

    low: float
    high: float

    def fraction(self, u: float) -> float:
        """The fraction at quantile ``u`` in [0, 1)."""
        return float(np.exp(np.log(self.low) + u * (np.log(self.high) - np.log(self.low))))


@dataclass(frozen=True)
class LogNormalVolumes:
    """Total lesion volume as a fraction of the brain, log-normal around ``median`` with
    log-spread ``sigma``, clipped to ``[low, high]`` (real lesion volumes are right-skewed)."""

    median: float
    sigma: float
    low: float
    high: float

    def fraction(self, u: float) -> float:
        """The fraction at quantile ``u`` in [0, 1)."""
        quantile = float(special.ndtri(min(max(u, 1e-9), 1 - 1e-9)))
        return float(np.clip(self.median * np.exp(self.sigma * quantile), self.low, self.high))


# Acute lesions (CT, DWI): 0.26 to 20 ml in a ~1.3 l brain.
ACUTE_LESION_VOLUMES = LogUniformVolumes(2e-4, 1.5e-2)
# Chronic T1w lesions as in ATLAS v2.0's training masks (median 5 ml, 0.01 ml upwards):
# median 0.38 % of a ~1.3 l brain, 80 % of cases between 0.9 and 27 ml, at most 65 ml.
ATLAS_LESION_VOLUMES = LogNormalVolumes(3.8e-3, 1.3, 1e-5, 0.05)


@dataclass(frozen=True)
class AnatomyPlan:
    """The scalar draws of one case (sizes in mm); fields are drawn separately."""

    semi_axes_mm: tuple[float, float, float]  # (x, y, z)
    shape_amplitude: float
    ventricle_scale: float
    gm_thickness_mm: float
    sulcal_depth_mm: float
    lesion: LesionPlan | None


def draw_plan(
    rng: np.random.Generator,
    empty_fraction: float = 0.05,
    volumes: LogUniformVolumes | LogNormalVolumes = ACUTE_LESION_VOLUMES,
) -> AnatomyPlan:
    """Draw one case's anatomy and lesion plan (always the same number of draws per case)."""
    semi_axes = (rng.uniform(62, 68), rng.uniform(80, 86), rng.uniform(55, 61))
    shape_amplitude = rng.uniform(0.025, 0.05)
    ventricle_scale = rng.uniform(0.8, 1.6)
    gm_thickness = rng.uniform(2.8, 3.8)
    sulcal_depth = rng.uniform(12.0, 18.0)
    lesion_free = rng.random() < empty_fraction
    count = int(rng.integers(1, 4))
    side = int(rng.choice([-1, 1]))
    fraction = volumes.fraction(float(rng.uniform()))
    shares = tuple(float(v) for v in rng.dirichlet(np.full(count, 2.0)))
    contrast = float(rng.random())
    lesion = None if lesion_free else LesionPlan(side, fraction, shares, contrast)
    return AnatomyPlan(
        tuple(float(v) for v in semi_axes),
        float(shape_amplitude),
        float(ventricle_scale),
        float(gm_thickness),
        float(sulcal_depth),
        lesion,
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
    """

    grid: Grid
    box: tuple[slice, slice, slice]
    labels: np.ndarray
    brain: np.ndarray
    lesion: np.ndarray

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
    """Grey-matter ribbon and CSF (rim, sulci, fissure) masks; both inside the brain."""
    gm_t = plan.gm_thickness_mm
    fold = np.abs(folds)
    sulcal = depth < plan.sulcal_depth_mm
    fissure = (np.abs(x) < 1.0) & (depth < 30.0)
    csf = (depth < CSF_RIM_MM) | ((fold < 0.2) & sulcal) | fissure
    grey = (depth < CSF_RIM_MM + gm_t) | ((fold < 0.8) & (depth < plan.sulcal_depth_mm + gm_t))
    grey |= (np.abs(x) < 1.0 + gm_t) & (depth < 30.0 + gm_t)
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


def head_box(
    grid: Grid, center_mm: tuple[float, float, float], plan: AnatomyPlan, with_skull: bool
) -> tuple[slice, slice, slice]:
    """The voxels that can hold head tissue (the surface noise is clipped at 3 sigma)."""
    growth = 1.0 + SHAPE_CLIP * plan.shape_amplitude
    margin = (1.5 + 6.0 * (1.0 + 0.15 * SHAPE_CLIP) + 4.0 if with_skull else 0.0) + 2.0
    ax, ay, az = plan.semi_axes_mm
    half = (ax * growth * 1.1 + margin, ay * growth + margin, az * growth + margin)
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
        with_skull: add CSF, bone and scalp shells outside the brain (CT, DWI).
    """
    box = head_box(grid, center_mm, plan, with_skull)
    sub = grid.crop(box)
    coords = head_coordinates(sub, center_mm)
    axes_mm = [c.ravel() for c in coords]
    shape_field = coarse_field(rngs["shape"], 12.0, 20.0)
    fold_field = coarse_field(rngs["folds"], 2.5, 3.5, half_width_mm=108.0)  # brain only
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
    eligible = brain & (depth > CSF_RIM_MM) & ~ventricles
    lesion = np.zeros(sub.shape, dtype=bool)
    if plan.lesion is not None:
        lesion = place_lesions(sub, plan.lesion, eligible, depth, coords[2], brain, rngs["lesions"])
    labels[lesion] = LESION
    return Anatomy(grid, box, labels, brain, lesion)


def _lesion_voxel_counts(plan: LesionPlan, brain_voxels: int) -> list[int]:
    """Voxels per lesion so the total matches the planned fraction (each lesion >= 1 voxel)."""
    total = plan.volume_fraction * brain_voxels
    return [max(1, round(total * share)) for share in plan.shares]


def place_lesions(
    grid: Grid,
    plan: LesionPlan,
    eligible: np.ndarray,
    depth: np.ndarray,
    head_x: np.ndarray,
    brain: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Grow each lesion to its exact voxel count inside one hemisphere; returns a bool mask."""
    side_ok = eligible & (head_x * plan.side > MIDLINE_MARGIN_MM)
    lesion = np.zeros(grid.shape, dtype=bool)
    for voxels in _lesion_voxel_counts(plan, int(brain.sum())):
        radius_mm = float(np.cbrt(3.0 * voxels * grid.voxel_volume_mm3 / (4.0 * np.pi)))
        center = _pick_center(side_ok & ~lesion, depth, radius_mm, rng)
        if center is None:
            break
        _grow_lesion(grid, center, radius_mm, voxels, side_ok & ~lesion, lesion, rng)
    return lesion


def _pick_center(
    allowed: np.ndarray, depth: np.ndarray, radius_mm: float, rng: np.random.Generator
) -> tuple[int, int, int] | None:
    """A random allowed voxel deep enough for most of the lesion to stay inside the brain."""
    for min_depth in (min(0.7 * radius_mm, 25.0), 0.0):
        candidates = np.flatnonzero(allowed & (depth > min_depth))
        if candidates.size:
            flat = int(candidates[rng.integers(candidates.size)])
            return tuple(int(v) for v in np.unravel_index(flat, allowed.shape))
    return None


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _blob_score(
    offsets_mm: np.ndarray, radius_mm: float, spacing: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Closeness to a randomly oriented ellipsoid plus smoothed noise, ``(z, y, x)``.

    Thresholding it gives an irregular blob with satellite fragments, as lesions have.
    """
    axes = np.exp(rng.normal(0.0, 0.3, 3))
    axes /= np.cbrt(np.prod(axes))
    local = offsets_mm @ _random_rotation(rng) / (radius_mm * axes)
    noise = rng.standard_normal(offsets_mm.shape[:3])
    noise = ndimage.gaussian_filter(noise, 0.35 * radius_mm / spacing, mode="nearest")
    noise /= max(float(noise.std()), 1e-12)
    return -np.sqrt((local**2).sum(-1)) + 0.35 * noise


def _grow_lesion(
    grid: Grid,
    center: tuple[int, int, int],
    radius_mm: float,
    voxels: int,
    allowed: np.ndarray,
    lesion: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Mark the ``voxels`` best-scoring allowed voxels of an irregular blob around ``center``.

    Taking the top voxels (rather than a fixed threshold) hits the planned size exactly.
    """
    spacing = np.asarray(grid.spacing_mm)
    half = np.maximum(np.ceil(2.5 * radius_mm / spacing).astype(int), 2)
    low = np.maximum(np.asarray(center) - half, 0)
    high = np.minimum(np.asarray(center) + half + 1, grid.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
    ranges = [(np.arange(box[i].start, box[i].stop) - center[i]) * spacing[i] for i in range(3)]
    offsets = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1)  # (z, y, x, 3) mm
    score = _blob_score(offsets, radius_mm, spacing, rng)
    score[~allowed[box]] = -np.inf
    take = min(voxels, int(np.isfinite(score).sum()))
    if take == 0:
        return
    chosen = np.argpartition(score.ravel(), -take)[-take:]
    region = np.zeros(score.size, dtype=bool)
    region[chosen] = True
    lesion[box] |= region.reshape(score.shape)
