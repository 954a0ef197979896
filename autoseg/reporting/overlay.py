"""Overlay figures of one case: axial slices through the largest lesion with outlines.

Every panel shows the image in grey, the reference outline in green and the prediction
outline in red; an optional last panel shows the voxel-wise uncertainty (normalised
entropy in [0, 1]) as a heat map. Axial means the ``Z`` axis of ``(Z, Y, X)`` (the slice
axis of thick-slice CT), shown with the in-plane aspect from the spacing, anterior up and
the patient's right on the viewer's left (radiological convention) when the affine says
which way is which.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from autoseg.core.errors import InvalidInputError
from autoseg.core.paths import ensure_writable_file
from autoseg.data.io import read_volume
from autoseg.data.records import ImageMeta
from autoseg.reporting.figures import save_figure
from autoseg.reporting.lesions import component_labels

PANEL_INCHES = 3.0
TITLE_INCHES = 0.45
DPI = 100
REFERENCE_COLOR = "lime"
PREDICTION_COLOR = "red"
LEGEND = "green: reference, red: prediction"
ZOOM_MIN_MM = 30.0

Crop = tuple[slice, slice]
FULL: Crop = (slice(None), slice(None))


@dataclass(frozen=True)
class CaseVolumes:
    """The arrays of one case, all ``(Z, Y, X)`` in the image's frame.

    Attributes:
        image: first image channel, float.
        prediction: predicted label map.
        reference: reference label map, or None for unlabelled cases.
        uncertainty: normalised entropy in [0, 1], or None.
        meta: geometry of the image (spacing and affine decide aspect and orientation).
    """

    image: np.ndarray
    prediction: np.ndarray
    reference: np.ndarray | None
    uncertainty: np.ndarray | None
    meta: ImageMeta


def _read_matching(path: Path | None, shape: tuple[int, ...], what: str) -> np.ndarray | None:
    if path is None:
        return None
    array, _ = read_volume(path)
    if tuple(array.shape) != tuple(shape):
        raise InvalidInputError(f"{path}: {what} shape {array.shape} != image shape {shape}")
    return array


def load_case(
    image_path: str | os.PathLike,
    prediction_path: str | os.PathLike,
    reference_path: str | os.PathLike | None = None,
    uncertainty_path: str | os.PathLike | None = None,
) -> CaseVolumes:
    """Read a case's image (its first channel file), prediction, reference and uncertainty.

    Raises:
        InvalidInputError: unreadable files, or a volume whose shape differs from the image.
    """
    image, meta = read_volume(image_path)
    as_path = [None if p is None else Path(p) for p in (reference_path, uncertainty_path)]
    return CaseVolumes(
        image=image.astype(np.float32),
        prediction=_read_matching(Path(prediction_path), image.shape, "prediction"),
        reference=_read_matching(as_path[0], image.shape, "reference"),
        uncertainty=_read_matching(as_path[1], image.shape, "uncertainty"),
        meta=meta,
    )


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of ``mask > 0`` (all False when empty)."""
    labels, count = component_labels(mask)
    if count == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def focus_lesion(reference: np.ndarray | None, prediction: np.ndarray) -> np.ndarray:
    """The lesion a reader should look at: the reference's largest, else the prediction's
    largest (all False when both are empty)."""
    if reference is not None:
        component = largest_component(reference)
        if component.any():
            return component
    return largest_component(prediction)


def lesion_slices(
    reference: np.ndarray | None, prediction: np.ndarray, count: int = 3
) -> list[int]:
    """Axial (``Z``) indices to show, sorted: through the focus lesion (see
    :func:`focus_lesion`), else the middle slice.

    One index is the slice where the lesion's area is largest; up to ``count - 1`` more
    sit at the lesion's area-weighted 25th and 75th percentile depth, so a long lesion is
    seen at several levels. Repeats are dropped.
    """
    component = focus_lesion(reference, prediction)
    if not component.any():
        return [prediction.shape[0] // 2]
    area = component.sum(axis=(1, 2))
    chosen = [int(np.argmax(area))]
    depths = np.nonzero(area)[0]
    for quantile in (25, 75)[: max(0, count - 1)]:
        chosen.append(round(float(np.percentile(np.repeat(depths, area[depths]), quantile))))
    return sorted(set(chosen))


def display_flips(meta: ImageMeta) -> tuple[bool, bool]:
    """Whether to flip rows and columns so anterior is up and patient right is on the left.

    Row index ``Y`` runs along the affine's ``j`` column, column index ``X`` along ``i``;
    a RAS-positive ``j`` (toward anterior) must be flipped to put anterior at the top, and
    a RAS-positive ``i`` (toward the patient's right) flipped to put right on the left.
    """
    affine = meta.affine_array
    return bool(affine[1, 1] > 0), bool(affine[0, 0] > 0)


def axial_view(volume: np.ndarray, z: int, flips: tuple[bool, bool]) -> np.ndarray:
    """Slice ``z`` of a ``(Z, Y, X)`` volume as a ``(rows, cols)`` display array."""
    view = volume[z]
    if flips[0]:
        view = view[::-1, :]
    if flips[1]:
        view = view[:, ::-1]
    return view


def zoom_box(mask: np.ndarray, spacing_yx: tuple[float, float]) -> Crop | None:
    """A display crop around a small 2D lesion: three times its extent, at least
    :data:`ZOOM_MIN_MM` wide; None when there is no lesion or it is already large."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    box = []
    for coords, size, spacing in zip((rows, cols), mask.shape, spacing_yx, strict=True):
        extent = int(coords.max() - coords.min() + 1)
        half = max(1.5 * extent, ZOOM_MIN_MM / 2.0 / spacing)
        center = (coords.max() + coords.min()) / 2.0
        start = int(np.clip(round(center - half), 0, size - 1))
        box.append(slice(start, int(np.clip(round(center + half) + 1, start + 1, size))))
    covered = [(s.stop - s.start) / size for s, size in zip(box, mask.shape, strict=True)]
    return None if min(covered) > 0.6 else (box[0], box[1])


def intensity_window(image: np.ndarray) -> tuple[float, float]:
    """Grey-level range: 0.5th-99.5th percentile of the nonzero voxels (robust to the
    zero background of skull-stripped MRI and to CT's bone and air extremes)."""
    values = image[image != 0] if np.any(image != 0) else image.ravel()
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(high if high > low else low + 1.0)


def outline(axes: Axes, mask: np.ndarray, color: str) -> None:
    """Draw the boundary of a 2D mask as a contour line (nothing when the mask is empty)."""
    if np.any(mask > 0):
        axes.contour((mask > 0).astype(np.float32), levels=[0.5], colors=color, linewidths=1.2)


@dataclass(frozen=True)
class PanelStyle:
    """What every panel of a figure shares: grey window, flips, aspect, optional crop."""

    window: tuple[float, float]
    flips: tuple[bool, bool]
    aspect: float
    crop: Crop = FULL

    def view(self, volume: np.ndarray, z: int) -> np.ndarray:
        return axial_view(volume, z, self.flips)[self.crop]


def _base_panel(axes: Axes, case: CaseVolumes, z: int, style: PanelStyle) -> None:
    low, high = style.window
    axes.imshow(style.view(case.image, z), cmap="gray", vmin=low, vmax=high,
                aspect=style.aspect, interpolation="nearest")  # fmt: skip
    axes.set_xticks([])
    axes.set_yticks([])


def draw_slice(axes: Axes, case: CaseVolumes, z: int, style: PanelStyle, label: str = "") -> None:
    """One panel: the image at slice ``z`` with reference (green) and prediction (red)."""
    _base_panel(axes, case, z, style)
    if case.reference is not None:
        outline(axes, style.view(case.reference, z), REFERENCE_COLOR)
    outline(axes, style.view(case.prediction, z), PREDICTION_COLOR)
    axes.set_title(f"{label}z = {z}", fontsize=9)


def draw_uncertainty(axes: Axes, case: CaseVolumes, z: int, style: PanelStyle) -> None:
    """One panel: the image at slice ``z`` under the uncertainty heat map (0 transparent)."""
    _base_panel(axes, case, z, style)
    heat = np.ma.masked_less(style.view(case.uncertainty, z), 0.02)
    axes.imshow(heat, cmap="inferno", vmin=0.0, vmax=1.0, alpha=0.75, aspect=style.aspect,
                interpolation="nearest")  # fmt: skip
    axes.set_title(f"uncertainty, z = {z}", fontsize=9)


def figure_size_inches(meta: ImageMeta, panels: int) -> tuple[float, float]:
    """Width and height of a figure of ``panels`` side-by-side axial panels."""
    shape, spacing = meta.shape, meta.spacing_mm
    ratio = (shape[1] * spacing[1]) / max(shape[2] * spacing[2], 1e-6)
    height = PANEL_INCHES * float(np.clip(ratio, 0.5, 2.0)) + TITLE_INCHES
    return PANEL_INCHES * panels, round(height, 2)  # whole pixels at DPI = 100


def focus_view(case: CaseVolumes, slices: list[int]) -> tuple[int, Crop | None]:
    """The slice for the zoom and uncertainty panels (the focus lesion's largest section
    when it is among ``slices``, else the first) and the zoom crop there, if any."""
    component = focus_lesion(case.reference, case.prediction)
    area = component.sum(axis=(1, 2))
    z = int(np.argmax(area)) if area.any() and int(np.argmax(area)) in slices else slices[0]
    flips = display_flips(case.meta)
    return z, zoom_box(axial_view(component, z, flips), case.meta.spacing_mm[1:])


def case_figure(case: CaseVolumes, slices: list[int], title: str) -> Figure:
    """One figure: a panel per slice, a zoom on a small focus lesion, and an uncertainty
    panel when the case has an uncertainty map.

    Args:
        case: the case's volumes.
        slices: axial indices (see :func:`lesion_slices`).
        title: figure title (case id and headline metric).
    """
    focus_z, crop = focus_view(case, slices)
    panels = len(slices) + (crop is not None) + (case.uncertainty is not None)
    figure = Figure(figsize=figure_size_inches(case.meta, panels), layout="constrained")
    axes = list(figure.subplots(1, panels, squeeze=False)[0])
    style = PanelStyle(intensity_window(case.image), display_flips(case.meta),
                       float(case.meta.spacing_mm[1] / case.meta.spacing_mm[2]))  # fmt: skip
    for z in slices:
        draw_slice(axes.pop(0), case, z, style)
    if crop is not None:
        draw_slice(axes.pop(0), case, focus_z, replace(style, crop=crop), "zoom, ")
    if case.uncertainty is not None:
        draw_uncertainty(axes.pop(0), case, focus_z, style)
    figure.suptitle(f"{title}  ({LEGEND})", fontsize=10)
    return figure


def draw_overlay(
    image_path: str | os.PathLike,
    prediction_path: str | os.PathLike,
    output_png: str | os.PathLike,
    reference_path: str | os.PathLike | None = None,
    slice_index: int | None = None,
    uncertainty_path: str | os.PathLike | None = None,
) -> Path:
    """Draw one case's overlay (what ``autoseg_visualize`` runs) and write it as a PNG.

    Args:
        image_path: the image (first channel file of a multi-channel case).
        prediction_path: the predicted label map.
        output_png: where to write the figure (atomically).
        reference_path: the reference label map, if there is one.
        slice_index: show only this axial slice; None picks up to three through the
            largest lesion (see :func:`lesion_slices`).
        uncertainty_path: a ``<case>_uncertainty`` volume to add as a heat-map panel.

    Returns:
        The written PNG path.

    Raises:
        InvalidInputError: unreadable inputs, mismatched shapes, a slice out of range.
    """
    ensure_writable_file(output_png, "overlay PNG")
    case = load_case(image_path, prediction_path, reference_path, uncertainty_path)
    depth = case.image.shape[0]
    if slice_index is not None and not 0 <= slice_index < depth:
        raise InvalidInputError(f"{image_path}: slice {slice_index} outside 0..{depth - 1}")
    slices = (
        [slice_index] if slice_index is not None else lesion_slices(case.reference, case.prediction)
    )
    figure = case_figure(case, slices, Path(prediction_path).name)
    return save_figure(figure, Path(output_png), DPI)
