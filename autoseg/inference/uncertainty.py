"""Voxel-wise uncertainty and per-lesion confidence (``autoseg_predict --save-uncertainty``).

The ensemble's members are the networks of every fold (of every configuration). Each
member's probabilities are predicted separately (its TTA mirrors averaged as logits, as
in :func:`autoseg.inference.case_prediction.predict_case`) and reverted to the input grid; then:

- the ensemble mean is the mean over configurations of each configuration's mean over its
  folds (the same weights as :func:`autoseg.inference.ensemble.ensemble_folders` gives
  configurations predicted separately), and its argmax, postprocessed, is the label map;
- ``<case>_uncertainty.nii.gz`` (float32) is the predictive entropy of that mean,
  ``-sum_k p_k log p_k / log K``, in [0, 1]: 0 where the ensemble is certain, 1 where
  every class is equally likely;
- ``<case>_disagreement.nii.gz`` (float32) is ``1 - (members whose argmax equals the
  ensemble label) / members``: 0 where every fold votes for the final label, at most
  ``1 - 1/M``. With a single network it is 0 everywhere (one fold cannot disagree with
  itself; its doubt shows in the entropy only);
- ``<case>_lesions.json`` lists each predicted lesion (26-connected component of the
  foreground) with its size, centroid and mean confidence (see :func:`lesion_report`).

Outputs are written atomically and the label file last, so ``--continue`` sees a case as
finished only when all of its files are there.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cc3d
import numpy as np
from scipy import ndimage

from autoseg.core.atomic import write_json
from autoseg.data.io import write_label, write_volume
from autoseg.data.prediction_files import DISAGREEMENT_SUFFIX, LESIONS_SUFFIX, UNCERTAINTY_SUFFIX
from autoseg.data.records import ImageMeta
from autoseg.inference.case_prediction import predict_preprocessed
from autoseg.inference.folder_prediction import run_folder
from autoseg.inference.inputs import InputCase
from autoseg.inference.outputs import CaseOutputs, write_case
from autoseg.inference.postprocess import check_postprocessing, postprocess
from autoseg.inference.settings import InferenceSettings
from autoseg.plans.preprocessing import PreprocessingSpec
from autoseg.preprocessing.case import preprocess_case, revert_probabilities
from autoseg.preprocessing.properties import PreprocessedCase

LESION_CONNECTIVITY = 26


@dataclass(frozen=True)
class MemberGroup:
    """The folds of one configuration: networks sharing a preprocessing and settings."""

    networks: Sequence[Callable]
    spec: PreprocessingSpec
    settings: InferenceSettings


def predictive_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy of ``probabilities (K, *spatial)`` over K, divided by ``log K``: float32 in
    [0, 1]."""
    num_classes = probabilities.shape[0]
    if num_classes < 2:
        return np.zeros(probabilities.shape[1:], np.float32)
    p = np.clip(probabilities.astype(np.float32), 1e-12, 1.0)
    entropy = -(p * np.log(p)).sum(axis=0) / math.log(num_classes)
    return np.clip(entropy, 0.0, 1.0).astype(np.float32)


def fold_disagreement(members: Sequence[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """Fraction of members whose argmax differs from ``labels`` (float32, 0 for one member).

    Args:
        members: each member's probabilities ``(K, *spatial)``.
        labels: the ensemble's labels ``(*spatial)``.
    """
    agree = np.zeros(labels.shape, np.float32)
    for probabilities in members:
        agree += np.argmax(probabilities, axis=0) == labels
    return (1.0 - agree / len(members)).astype(np.float32)


def ensemble_mean(groups: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """Mean over groups of each group's mean over its members (float32 ``(K, *spatial)``)."""
    total = np.zeros_like(groups[0][0], dtype=np.float32)
    for members in groups:
        total += np.mean(np.stack(members), axis=0, dtype=np.float32) / len(groups)
    return total


def _world(meta: ImageMeta, zyx: np.ndarray) -> list[float]:
    """RAS mm of a voxel position ``(z, y, x)`` (the affine takes ``(i, j, k) = (x, y, z)``)."""
    xyz1 = np.array([zyx[2], zyx[1], zyx[0], 1.0])
    return [round(float(v), 3) for v in (meta.affine_array @ xyz1)[:3]]


def lesion_report(
    labels: np.ndarray,
    probabilities: np.ndarray,
    entropy: np.ndarray,
    disagreement: np.ndarray,
    meta: ImageMeta,
) -> list[dict[str, Any]]:
    """One entry per 26-connected foreground component of ``labels``, largest first.

    Each entry: ``id`` (1.., the order), ``label`` (majority class), ``voxels``,
    ``volume_ml``, ``centroid_voxel_zyx``, ``centroid_world_ras`` (mm, x y z),
    ``mean_foreground_probability`` (``1 - p(background)``), ``min_foreground_probability``,
    ``mean_entropy`` and ``mean_disagreement`` over the lesion's voxels.
    """
    components, count = cc3d.connected_components(
        np.ascontiguousarray(labels > 0), connectivity=LESION_CONNECTIVITY, return_N=True
    )
    if count == 0:
        return []
    index = np.arange(1, count + 1)
    foreground = 1.0 - probabilities[0].astype(np.float32)
    voxels = ndimage.sum_labels(np.ones_like(labels, np.int64), components, index)
    centroids = ndimage.center_of_mass(np.ones_like(labels, np.float32), components, index)
    means = {
        "mean_foreground_probability": ndimage.mean(foreground, components, index),
        "min_foreground_probability": ndimage.minimum(foreground, components, index),
        "mean_entropy": ndimage.mean(entropy, components, index),
        "mean_disagreement": ndimage.mean(disagreement, components, index),
    }
    voxel_ml = float(np.prod(meta.spacing_mm)) / 1000.0
    lesions = []
    for i in np.argsort(-voxels, kind="stable"):
        values = labels[components == index[i]]
        lesions.append(
            {
                "label": int(np.bincount(values).argmax()),
                "voxels": int(voxels[i]),
                "volume_ml": round(float(voxels[i]) * voxel_ml, 6),
                "centroid_voxel_zyx": [round(float(v), 3) for v in centroids[i]],
                "centroid_world_ras": _world(meta, np.asarray(centroids[i])),
                **{key: round(float(v[i]), 6) for key, v in means.items()},
            }
        )
    return [{"id": n + 1, **lesion} for n, lesion in enumerate(lesions)]


def uncertainty_paths(outputs: CaseOutputs, ending: str = ".nii.gz") -> dict[str, Path]:
    """The extra files ``--save-uncertainty`` writes beside a case's labels."""
    folder, case_id = outputs.labels.parent, outputs.case_id
    return {
        "uncertainty": folder / f"{case_id}{UNCERTAINTY_SUFFIX}{ending}",
        "disagreement": folder / f"{case_id}{DISAGREEMENT_SUFFIX}{ending}",
        "lesions": folder / f"{case_id}{LESIONS_SUFFIX}",
    }


def write_case_with_uncertainty(
    outputs: CaseOutputs,
    grouped: Sequence[Sequence[np.ndarray]],
    meta: ImageMeta,
    postprocessing: dict[str, Any],
    probability_dtype: str = "float16",
    ending: str = ".nii.gz",
) -> dict[str, Any]:
    """Write the uncertainty maps and lesion JSON, then the case's usual outputs.

    Returns:
        The lesion JSON payload.
    """
    mean = ensemble_mean(grouped)
    argmax = np.argmax(mean, axis=0).astype(np.uint8)
    labels = postprocess(argmax, postprocessing, mean, meta.spacing_mm)
    entropy = predictive_entropy(mean)
    members = [m for group in grouped for m in group]
    disagreement = fold_disagreement(members, labels)
    paths = uncertainty_paths(outputs, ending)
    write_volume(paths["uncertainty"], entropy, meta, np.float32)
    write_volume(paths["disagreement"], disagreement, meta, np.float32)
    payload = {
        "case_id": outputs.case_id,
        "members": len(members),
        "connectivity": LESION_CONNECTIVITY,
        "lesions": lesion_report(labels, mean, entropy, disagreement, meta),
    }
    write_json(paths["lesions"], payload)
    if outputs.probabilities is not None:
        write_case(outputs, mean, meta, postprocessing, probability_dtype)
    else:
        write_label(outputs.labels, labels, meta)
    return payload


@dataclass(frozen=True)
class UncertaintyWriter:
    """The folder loop's writer for ``--save-uncertainty``: each network predicted apart.

    Each group preprocesses the case with its own spec (configurations may differ in
    spacing) and runs its networks one at a time so their outputs stay separate; the
    writer thread reverts every member to the input grid and writes the maps, the lesion
    JSON and the case's usual outputs (:func:`write_case_with_uncertainty`).
    """

    groups: Sequence[MemberGroup]
    postprocessing: dict[str, Any]
    probability_dtype: str = "float16"
    ending: str = ".nii.gz"

    @property
    def num_channels(self) -> int:
        return self.groups[0].spec.num_channels

    def start(self) -> None:
        """Nothing to prepare: the networks arrive on their device."""

    def load(self, case: InputCase) -> list[PreprocessedCase]:
        case_id, files = case
        return [preprocess_case(list(files), None, g.spec, case_id) for g in self.groups]

    def predict(self, loaded: Sequence[PreprocessedCase]) -> list[list[np.ndarray]]:
        """Every network's probabilities ``(K, Z, Y, X)`` in its group's grid, grouped."""
        return [
            [predict_preprocessed([net], case, group.settings) for net in group.networks]
            for group, case in zip(self.groups, loaded, strict=True)
        ]

    def write(
        self,
        outputs: CaseOutputs,
        loaded: Sequence[PreprocessedCase],
        predicted: Sequence[Sequence[np.ndarray]],
    ) -> None:
        grouped = [
            [revert_probabilities(member, case.properties) for member in members]
            for case, members in zip(loaded, predicted, strict=True)
        ]
        meta = loaded[-1].properties.meta
        write_case_with_uncertainty(outputs, grouped, meta, self.postprocessing,
                                    self.probability_dtype, self.ending)  # fmt: skip


def predict_folder_with_uncertainty(
    input_cases: Sequence[InputCase],
    output_dir: str | os.PathLike,
    groups: Sequence[MemberGroup],
    postprocessing: dict[str, Any] | None = None,
    save_probabilities: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    num_parts: int = 1,
    part_id: int = 0,
    probability_dtype: str = "float16",
    output_ending: str = ".nii.gz",
    read_data_first: bool = True,
    progress: bool = False,
) -> list[str]:
    """Predict cases like :func:`~autoseg.inference.folder_prediction.predict_folder`, plus
    the uncertainty outputs of the module docstring: the same folder loop
    (:func:`~autoseg.inference.folder_prediction.run_folder`) with an
    :class:`UncertaintyWriter`.

    Args:
        input_cases: ``[(case_id, [channel files])]``.
        output_dir: where every output goes.
        groups: one :class:`MemberGroup` per configuration.
        postprocessing: applied to the ensemble labels.
        save_probabilities: also write ``<case>.npz`` (ensemble mean) and ``<case>.json``.
        overwrite: redo finished cases.
        resume: skip finished cases.
        num_parts: split the cases into this many parts ...
        part_id: ... and predict this one.
        probability_dtype: npz dtype.
        output_ending: ending of the label and uncertainty files.
        read_data_first: check every voxel of every input first (else headers only).
        progress: show a progress bar.

    Returns:
        The ids of the cases predicted.
    """
    postprocessing = dict(postprocessing or {})
    check_postprocessing(postprocessing)
    writer = UncertaintyWriter(groups, postprocessing, probability_dtype, output_ending)
    return run_folder(
        input_cases, output_dir, writer, save_probabilities, overwrite, resume, num_parts,
        part_id, output_ending, read_data_first, progress,
    )  # fmt: skip
