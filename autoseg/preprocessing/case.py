"""The single-case code path shared by training caches and inference.

``crop -> (N4) -> normalise -> resample (-> contralateral channels)`` forwards,
``resample back -> un-crop`` backwards.
Training and inference call the same :func:`preprocess_arrays`, so a model never sees input
prepared differently from what it was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autoseg.core.errors import InvalidInputError
from autoseg.data.io import read_volume
from autoseg.data.records import ImageMeta, geometry_mismatch
from autoseg.plans.preprocessing import PreprocessingSpec
from autoseg.preprocessing.contralateral import with_contralateral
from autoseg.preprocessing.crop import CropBox, bounding_box, crop, foreground_mask, uncrop
from autoseg.preprocessing.normalize import n4_correct_channels, normalize
from autoseg.preprocessing.properties import (
    CaseProperties,
    PreprocessedCase,
    case_seed,
    class_voxel_counts,
    sample_foreground,
)
from autoseg.preprocessing.resample import (
    argmax_resampled,
    axis_orders,
    resample_image,
    resample_labels,
    target_shape,
    thick_axis,
)


def read_case(
    image_files: Sequence[Path], label_file: Path | None = None
) -> tuple[np.ndarray, np.ndarray | None, ImageMeta]:
    """Read channel files and an optional label file onto one grid.

    Returns:
        ``(data (C, Z, Y, X) float32, labels (Z, Y, X) or None, meta of the first channel)``.

    Raises:
        InvalidInputError: one line per file whose grid differs from the first channel's.
    """
    arrays, metas = zip(*(read_volume(path) for path in image_files), strict=True)
    problems = []
    for path, meta in zip(image_files[1:], metas[1:], strict=True):
        if (mismatch := geometry_mismatch(metas[0], meta)) is not None:
            problems.append(f"{path}: grid differs from {Path(image_files[0]).name}: {mismatch}")
    labels = None
    if label_file is not None:
        labels, label_meta = read_volume(label_file)
        if (mismatch := geometry_mismatch(metas[0], label_meta)) is not None:
            problems.append(f"{label_file}: grid differs from the image: {mismatch}")
    if problems:
        raise InvalidInputError(problems)
    data = np.stack([np.asarray(a, dtype=np.float32) for a in arrays])
    return data, labels, metas[0]


def _check_inputs(data: np.ndarray, seg: np.ndarray | None, spec: PreprocessingSpec) -> None:
    if data.ndim != 4:
        raise ValueError(f"data must be (C, Z, Y, X), got shape {data.shape}")
    if data.shape[0] != spec.num_channels:
        raise ValueError(f"{data.shape[0]} channels but the spec normalises {spec.num_channels}")
    if seg is not None and tuple(seg.shape) != tuple(data.shape[1:]):
        raise ValueError(f"labels shape {seg.shape} != image shape {data.shape[1:]}")
    if seg is not None and seg.size and (seg.min() < 0 or seg.max() > 127):
        raise ValueError("label values must lie in 0..127 (they are stored as int8)")


def _resample_seg(
    seg: np.ndarray, body: np.ndarray | None, out_shape: tuple[int, ...], thick: int | None
) -> np.ndarray:
    """Labels at the target grid, -1 where the (resampled) body mask is off and label is 0."""
    seg_out = resample_labels(seg, out_shape, thick)
    if body is not None:
        seg_out[(seg_out == 0) & ~body] = -1
    return seg_out[None]


def background_outside_body(probabilities: np.ndarray, body: np.ndarray | None) -> np.ndarray:
    """Class probabilities ``(K, z, y, x)`` with every voxel outside the body set to background.

    Training ignores the labels there (-1), so the network never learns what the air
    around a head is: a model trained for minutes marked blobs in the corners of CT slices.
    No lesion lies outside the body mask the image itself gives, so the prediction there is
    background by definition. Changes ``probabilities`` in place; None leaves it as is.
    """
    if body is not None:
        outside = ~body
        probabilities[:, outside] = 0.0
        probabilities[0, outside] = 1.0
    return probabilities


def _label_statistics(seg: np.ndarray | None, samples: int, case_id: str) -> dict[str, dict]:
    """Per-class voxel counts and sampled foreground coordinates of the cached labels."""
    if seg is None:
        return {"class_voxel_counts": {}, "foreground_coordinates": {}}
    counts = class_voxel_counts(seg)
    coordinates = sample_foreground(seg[0], samples, case_seed(case_id), counts)
    return {"class_voxel_counts": counts, "foreground_coordinates": coordinates}


def preprocess_arrays(
    data: np.ndarray,
    meta: ImageMeta,
    spec: PreprocessingSpec,
    seg: np.ndarray | None = None,
    case_id: str = "",
) -> PreprocessedCase:
    """Preprocess one case held in memory (the path both training and inference use).

    Args:
        data: image ``(C, Z, Y, X)`` in the grid described by ``meta``.
        meta: geometry of the input (its spacing drives the resampling).
        spec: the preprocessing settings from the plans.
        seg: optional labels ``(Z, Y, X)`` or ``(1, Z, Y, X)`` on the same grid.
        case_id: seeds the foreground sampling, so a case always gets the same samples.

    Returns:
        The case at the target spacing, with the properties needed to revert a prediction.
    """
    seg = None if seg is None else np.asarray(seg).reshape(data.shape[1:])
    _check_inputs(data, seg, spec)
    mask = foreground_mask(data)
    box = bounding_box(mask) if spec.crop_to_nonzero else CropBox.full(data.shape[1:])
    data, mask = crop(data, box), crop(mask, box)
    if spec.n4:
        data = n4_correct_channels(data, spec.normalization, meta.spacing_mm, mask)
    data = normalize(data, spec.normalization, mask)
    thick = thick_axis(meta.spacing_mm, spec.spacing_mm, spec.anisotropy_threshold)
    out_shape = target_shape(box.shape, meta.spacing_mm, spec.spacing_mm)
    data = resample_image(data, out_shape, thick).astype(spec.data_dtype, copy=False)
    body = None
    if spec.crop_to_nonzero:
        body = resample_labels(mask.astype(np.int8), out_shape, thick) > 0
    seg_out = None if seg is None else _resample_seg(crop(seg, box), body, out_shape, thick)
    if spec.contralateral:
        head = body if body is not None else foreground_mask(data)
        data = with_contralateral(data, meta.affine, head)
    properties = CaseProperties(
        case_id=case_id,
        meta=meta,
        crop_box=box,
        shape_after_crop=box.shape,
        shape_after_resampling=out_shape,
        spacing_mm=spec.spacing_mm,
        thick_axis=thick,
        spec_hash=spec.spec_hash,
        **_label_statistics(seg_out, spec.foreground_samples, case_id),
    )
    return PreprocessedCase(np.ascontiguousarray(data), seg_out, properties, body)


def preprocess_case(
    image_files: Sequence[Path],
    label_file: Path | None,
    spec: PreprocessingSpec,
    case_id: str = "",
) -> PreprocessedCase:
    """Read one case's files and preprocess it (see :func:`preprocess_arrays`)."""
    data, labels, meta = read_case([Path(p) for p in image_files], label_file)
    return preprocess_arrays(data, meta, spec, labels, case_id)


def revert_probabilities(probabilities: np.ndarray, properties: CaseProperties) -> np.ndarray:
    """Class probabilities ``(K, z, y, x)`` at the target spacing -> ``(K, Z, Y, X)`` in the
    original grid: linear resampling (nearest on the thick axis), background outside the crop.
    """
    resampled = resample_image(probabilities, properties.shape_after_crop, properties.thick_axis, 1)
    out = uncrop(resampled, properties.crop_box, 0.0)
    outside = np.ones(properties.original_shape, dtype=bool)
    outside[properties.crop_box.slices] = False
    out[0][outside] = 1.0
    return out


def revert_prediction(prediction: np.ndarray, properties: CaseProperties) -> np.ndarray:
    """A prediction at the target spacing -> uint8 labels ``(Z, Y, X)`` in the original grid.

    Write the result with ``autoseg.data.io.write_label(path, labels, properties.meta)`` to
    get the input's exact affine and header back.

    Args:
        prediction: class probabilities or logits ``(K, z, y, x)`` (argmax after linear
            resampling), or labels ``(z, y, x)`` / ``(1, z, y, x)`` (per-class linear
            resampling, then argmax, as for training labels).
        properties: the properties returned when the input was preprocessed.

    Returns:
        uint8 labels of the original shape; background outside the crop box.
    """
    shape = properties.shape_after_crop
    if prediction.ndim == 4 and prediction.shape[0] > 1:
        orders = axis_orders(1, properties.thick_axis)
        labels = argmax_resampled(enumerate(prediction), shape, orders)
    else:
        labels = resample_labels(
            prediction.reshape(prediction.shape[-3:]), shape, properties.thick_axis
        )
    return uncrop(labels.astype(np.uint8), properties.crop_box, 0)
