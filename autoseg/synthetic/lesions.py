"""Stroke lesions for the synthetic head: how many, how large, where, and how they look.

A case has one main lesion and up to three small satellites. Sizes are drawn in
millilitres, centres on a fixed 2 mm grid and shapes in mm, so a lesion has the same size,
place and shape at every grid spacing, and the size distribution can follow the real data:
ATLAS v2.0's chronic masks have a median of about 5 ml and a long tail (the largest are
hundreds of ml); acute DWI/CT lesions are similar with more emboli showers.
The main lesion's place follows its size, as vascular territories do: large infarcts are
cortical-subcortical wedges that reach the brain surface, mid-sized ones may sit against
a ventricle, the smallest are deep lacunes. Inside, a lesion is graded: its ``strength``
rises from a faint rim at the border to a full core (for chronic T1 the core can be as
dark as CSF), so the boundary is as hard to place as a real one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
from scipy import ndimage, special

from autoseg.synthetic.fields import CoarseField, Grid, coarse_field, sample_field

MIDLINE_MARGIN_MM = 2.0  # a lesion keeps this far from the midline plane (its hemisphere)
PLACES = ("cortical", "periventricular", "deep", "white_matter")
CORTICAL_FROM_ML = 20.0  # larger main lesions are territorial: they reach the cortex


@dataclass(frozen=True)
class LesionVolumes:
    """Main-lesion volume, log-normal around ``median_ml`` (log-spread ``sigma``) clipped to
    ``[low_ml, high_ml]``; satellites log-uniform in ``satellite_ml``.

    Attributes:
        satellite_odds: probabilities of 0, 1, 2, 3 satellites.
    """

    median_ml: float
    sigma: float
    low_ml: float
    high_ml: float
    satellite_ml: tuple[float, float]
    satellite_odds: tuple[float, float, float, float]

    def main_ml(self, u: float) -> float:
        """The main lesion's volume at quantile ``u`` in [0, 1)."""
        z = float(special.ndtri(min(max(u, 1e-9), 1 - 1e-9)))
        return float(np.clip(self.median_ml * np.exp(self.sigma * z), self.low_ml, self.high_ml))

    def satellite(self, u: float) -> float:
        """A satellite's volume at quantile ``u`` (log-uniform)."""
        low, high = np.log(self.satellite_ml[0]), np.log(self.satellite_ml[1])
        return float(np.exp(low + u * (high - low)))


# Chronic T1w lesions as in ATLAS v2.0 (median ~5 ml, 0.05 to 150 ml here).
CHRONIC_VOLUMES = LesionVolumes(4.5, 1.4, 0.05, 150.0, (0.05, 1.5), (0.45, 0.3, 0.15, 0.1))
# Acute DWI/CT lesions (ISLES'22-like): a little larger, more often multifocal.
ACUTE_VOLUMES = LesionVolumes(6.0, 1.5, 0.05, 150.0, (0.05, 2.0), (0.35, 0.3, 0.2, 0.15))


@dataclass(frozen=True)
class LesionSpec:
    """One lesion as planned.

    Attributes:
        volume_ml: its volume.
        place: one of :data:`PLACES`.
        side: +1 right hemisphere (RAS +x), -1 left.
        severity: 0..1, how far the core goes towards the modality's extreme (1: a chronic
            T1 core as dark as CSF, a very bright DWI core).
        rim_mm: width over which the strength rises from the border to the core.
        rim_floor: strength at the border (low = a faint rim that fades into tissue).
    """

    volume_ml: float
    place: str
    side: int
    severity: float
    rim_mm: float
    rim_floor: float


@dataclass(frozen=True)
class LesionPlan:
    """A case's lesions, main lesion first."""

    lesions: tuple[LesionSpec, ...]

    @property
    def side(self) -> int:
        """The main lesion's hemisphere."""
        return self.lesions[0].side

    @property
    def total_ml(self) -> float:
        return float(sum(lesion.volume_ml for lesion in self.lesions))


def main_place(volume_ml: float, u: float) -> str:
    """Where a main lesion of this size sits (large: cortical; small: mostly deep)."""
    if volume_ml >= CORTICAL_FROM_ML:
        return "cortical"
    if volume_ml < 1.0:
        return PLACES[1 + int(u * 3) % 3]  # periventricular, deep or white matter
    return PLACES[min(int(u * 4), 3)]


def draw_lesion_plan(rng: np.random.Generator, volumes: LesionVolumes) -> LesionPlan:
    """Draw a case's lesions (a fixed number of draws, so later streams do not shift)."""
    side = int(rng.choice([-1, 1]))
    main_ml = volumes.main_ml(float(rng.uniform()))
    count = int(rng.choice(4, p=volumes.satellite_odds))
    draws = rng.uniform(size=(4, 6))  # one row per lesion, main first
    specs = [_spec(main_ml, main_place(main_ml, draws[0, 0]), side, draws[0])]
    for row in draws[1 : 1 + count]:
        satellite_side = side if row[1] < 0.75 else -side
        place = PLACES[int(row[0] * 4) % 4]
        specs.append(_spec(volumes.satellite(float(row[2])), place, satellite_side, row))
    return LesionPlan(tuple(specs))


def sphere_radius_mm(volume_ml: float) -> float:
    """The radius of a sphere of ``volume_ml``: a lesion's size on the scale of its shape."""
    return float(np.cbrt(3.0 * volume_ml * 1000.0 / (4.0 * np.pi)))


def _spec(volume_ml: float, place: str, side: int, draws: np.ndarray) -> LesionSpec:
    """A lesion's look from its uniform draws: severity, rim width and rim floor.

    The rim is a share (20-60 %) of the lesion's radius, 0.7-6 mm: a lesion a rater traced
    is one a rater saw, so even a 0.05 ml lacune reaches its core at its centre (a fixed
    1-5 mm rim left most lesions under 1.5 ml at a contrast below the noise). Severity
    starts at 0.2: the mildest core still sits well below grey matter.
    """
    radius_mm = sphere_radius_mm(volume_ml)
    return LesionSpec(
        volume_ml=float(volume_ml),
        place=place,
        side=int(side),
        severity=float(0.2 + 0.8 * draws[3]),
        rim_mm=float(np.clip((0.2 + 0.4 * draws[4]) * radius_mm, 0.7, 6.0)),
        rim_floor=float(0.2 + 0.4 * draws[5]),
    )


@dataclass(frozen=True)
class Room:
    """The voxels a lesion may take on one grid, ``(z, y, x)``.

    Attributes:
        allowed: brain tissue, not CSF.
        head_x_mm: RAS x relative to the midline plane, broadcastable.
    """

    allowed: np.ndarray
    head_x_mm: np.ndarray

    def free_for(self, side: int, taken: np.ndarray) -> np.ndarray:
        """Voxels a lesion on hemisphere ``side`` may take, keeping off ``taken`` ones."""
        return self.allowed & (self.head_x_mm * side > MIDLINE_MARGIN_MM) & ~taken


@dataclass(frozen=True)
class Surroundings:
    """What choosing a lesion centre needs to know of the brain on one grid, ``(z, y, x)``.

    Attributes:
        room: the voxels a lesion may take.
        depth_mm: depth below the brain surface.
        ventricle_mm: distance to the nearest ventricle voxel.
    """

    room: Room
    depth_mm: np.ndarray
    ventricle_mm: np.ndarray


@dataclass
class LesionMaps:
    """Rendered lesions: the mask, and per voxel the strength (0 outside, floor..1 inside)
    and the severity of the lesion the voxel belongs to."""

    mask: np.ndarray
    strength: np.ndarray
    severity: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> LesionMaps:
        return cls(np.zeros(shape, bool), np.zeros(shape, np.float32), np.zeros(shape, np.float32))


def place_lesions(
    plan: LesionPlan,
    target: tuple[Grid, Room],
    placement: tuple[Grid, Surroundings],
    rng: np.random.Generator,
) -> LesionMaps:
    """Grow every planned lesion to its voxel count at its kind of place; paint its grading.

    Centres are chosen on the ``placement`` grid (one fixed spacing), and shapes are drawn
    in millimetres, so a case's lesions lie in the same place with the same shape whatever
    ``target`` grid it is rendered at, as its anatomy does. Each lesion is grown on both
    grids: on ``placement`` only to keep the next centres off it. Lesions do not overlap;
    one that finds no room (a tiny grid) is left out.
    """
    grid, room = target
    place_grid, around = placement
    maps = LesionMaps.empty(grid.shape)
    taken = np.zeros(place_grid.shape, bool)
    for spec in plan.lesions:
        radius_mm = sphere_radius_mm(spec.volume_ml)
        free = around.room.free_for(spec.side, taken)
        center = pick_center(free, around, spec.place, radius_mm, rng)
        if center is None:
            continue
        center_mm = place_grid.world_zyx(np.add(center, rng.uniform(-0.5, 0.5, 3)))
        blob = Blob.draw(radius_mm, rng)
        box, mask = grow_lesion(place_grid, center_mm, spec.volume_ml, blob, free)
        taken[box] |= mask
        region = grow_lesion(
            grid, center_mm, spec.volume_ml, blob, room.free_for(spec.side, maps.mask)
        )
        paint_grading(grid, region, spec, maps)
    return maps


def _candidates(around: Surroundings, place: str, radius_mm: float) -> list[np.ndarray]:
    """Centre conditions for a place, most specific first (later ones are fallbacks)."""
    depth, ventricle = around.depth_mm, around.ventricle_mm
    if place == "cortical":  # centred a little under the cortex: the lesion reaches it
        first = (depth > 0.25 * radius_mm) & (depth < max(0.7 * radius_mm, 4.0))
    elif place == "periventricular":  # against the ventricle wall
        first = (ventricle > 0.3 * radius_mm) & (ventricle < 0.9 * radius_mm + 2.0)
        first &= depth > min(0.8 * radius_mm, 25.0)
    elif place == "deep":  # basal ganglia / thalamus region
        first = (depth > max(25.0, radius_mm)) & (ventricle > 0.5 * radius_mm)
    else:
        first = (depth > min(0.8 * radius_mm + 3.0, 25.0)) & (ventricle > 0.8 * radius_mm)
    return [first, depth > min(0.7 * radius_mm, 25.0), depth > 0.0]


def pick_center(
    free: np.ndarray,
    around: Surroundings,
    place: str,
    radius_mm: float,
    rng: np.random.Generator,
) -> tuple[int, int, int] | None:
    """A random free voxel that meets the place's condition (relaxed when none does)."""
    for condition in _candidates(around, place, radius_mm):
        candidates = np.flatnonzero(free & condition)
        if candidates.size:
            flat = int(candidates[rng.integers(candidates.size)])
            return tuple(int(v) for v in np.unravel_index(flat, free.shape))
    return None


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


@dataclass(frozen=True)
class Blob:
    """A lesion's shape in mm, independent of any grid: a randomly oriented ellipsoid plus
    smooth noise. Taking the best voxels of its score gives an irregular blob with lobes
    and satellite fragments; larger lesions are more elongated, as territorial infarcts are.
    """

    radius_mm: float
    rotation: np.ndarray  # (3, 3) applied to (z, y, x) offsets
    axes: np.ndarray  # (3,) relative semi-axes, product 1
    noise: CoarseField  # centred on the lesion

    @classmethod
    def draw(cls, radius_mm: float, rng: np.random.Generator) -> Blob:
        elongation = 0.3 + 0.1 * min(radius_mm / 15.0, 1.0)
        axes = np.exp(rng.normal(0.0, elongation, 3))
        axes /= np.cbrt(np.prod(axes))
        rotation = _random_rotation(rng)
        sigma_mm = 0.35 * radius_mm
        noise = coarse_field(rng, sigma_mm / 2.0, sigma_mm, half_width_mm=2.5 * radius_mm + 4.0)
        return cls(radius_mm, rotation, axes, noise)

    def score(self, ranges_mm: list[np.ndarray]) -> np.ndarray:
        """The score at the voxel offsets ``ranges_mm`` (per axis, mm from the centre)."""
        offsets = np.stack(np.meshgrid(*ranges_mm, indexing="ij"), axis=-1)
        local = offsets @ self.rotation / (self.radius_mm * self.axes)
        return -np.sqrt((local**2).sum(-1)) + 0.35 * sample_field(self.noise, *ranges_mm)


def grow_lesion(
    grid: Grid, center_mm: np.ndarray, volume_ml: float, blob: Blob, allowed: np.ndarray
) -> tuple[tuple[slice, ...], np.ndarray]:
    """The best-scoring allowed voxels of ``blob`` centred at RAS ``center_mm`` (z, y, x),
    as many as ``volume_ml`` fills on ``grid``.

    Taking the top voxels (rather than a fixed threshold) hits the planned size exactly.

    Returns:
        ``(box, mask)``: the box slices of ``grid`` and the lesion mask inside it.
    """
    spacing = np.asarray(grid.spacing_mm)
    center = grid.voxel_zyx(center_mm)
    half = np.maximum(np.ceil(2.5 * blob.radius_mm / spacing).astype(int), 2)
    nearest = np.rint(center).astype(int)
    low = np.clip(nearest - half, 0, grid.shape)
    high = np.clip(nearest + half + 1, low, grid.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
    ranges = [(np.arange(box[i].start, box[i].stop) - center[i]) * spacing[i] for i in range(3)]
    if min(len(r) for r in ranges) == 0:  # the centre lies off this grid (a CT slab)
        return box, np.zeros([len(r) for r in ranges], bool)
    score = blob.score(ranges)
    score[~allowed[box]] = -np.inf
    voxels = max(1, round(volume_ml * 1000.0 / grid.voxel_volume_mm3))
    take = min(voxels, int(np.isfinite(score).sum()))
    region = np.zeros(score.size, dtype=bool)
    if take > 0:
        region[np.argpartition(score.ravel(), -take)[-take:]] = True
    return box, one_piece(region.reshape(score.shape), score, take)


def one_piece(region: np.ndarray, score: np.ndarray, voxels: int) -> np.ndarray:
    """The region's largest 26-connected piece, regrown to ``voxels`` by its best-scoring
    allowed neighbours: the top voxels of a noisy score include one-voxel specks that
    no rater would trace as a lesion of their own."""
    labels = cc3d.connected_components(region, connectivity=26)
    if labels.max() <= 1:
        return region
    piece = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    while (missing := voxels - int(piece.sum())) > 0:
        ring = ndimage.binary_dilation(piece, np.ones((3, 3, 3), bool)) & ~piece
        ring &= np.isfinite(score)
        if not ring.any():
            break
        candidates = np.flatnonzero(ring)
        best = candidates[np.argsort(score.ravel()[candidates])[::-1][:missing]]
        piece.ravel()[best] = True
    return piece


def paint_grading(
    grid: Grid, region: tuple[tuple[slice, ...], np.ndarray], spec: LesionSpec, maps: LesionMaps
) -> None:
    """Add one lesion to ``maps``: strength rises smoothly from ``rim_floor`` at the border
    to 1 at ``rim_mm`` inside (lesions thinner than their rim never reach a full core)."""
    box, mask = region
    if not mask.any():
        return
    padded = np.pad(mask, 1)
    inside_mm = ndimage.distance_transform_edt(padded, sampling=grid.spacing_mm)[1:-1, 1:-1, 1:-1]
    t = np.clip((inside_mm - 0.5 * min(grid.spacing_mm)) / spec.rim_mm, 0.0, 1.0)
    smooth = t * t * (3.0 - 2.0 * t)
    strength = (spec.rim_floor + (1.0 - spec.rim_floor) * smooth).astype(np.float32)
    maps.mask[box] |= mask
    maps.strength[box] = np.where(mask, strength, maps.strength[box])
    maps.severity[box] = np.where(mask, np.float32(spec.severity), maps.severity[box])
