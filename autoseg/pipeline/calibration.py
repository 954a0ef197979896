"""Fitting each configuration's temperature on its cross-validation predictions.

``autoseg_find_best`` calls :func:`calibrate_configuration` with a configuration's
validation folders (``fold_<k>/validation/<case>.npz``, saved by ``autoseg_train``).
Voxels are drawn from every validation case: all of them inside the brain (the first
image channel's nonzero voxels, which for skull-stripped data leaves out the air that
any network gets trivially right) plus every reference lesion voxel, at most
:data:`VOXELS_PER_CASE` per case (a seeded uniform draw). The temperature minimises the
NLL of the reference labels on them (:func:`autoseg.inference.calibration.fit_temperature`),
and the expected calibration error before and after is measured on the same voxels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.data.io import read_volume
from autoseg.data.layout import RawDataset
from autoseg.data.prediction_files import read_probabilities
from autoseg.evaluation.calibration import CalibrationBins, negative_log_likelihood
from autoseg.inference.calibration import fit_temperature, log_probabilities, scaled_log_softmax
from autoseg.inference.ensemble import probability_files

VOXELS_PER_CASE = 100_000
SEED = 12345


@dataclass(frozen=True)
class Calibration:
    """A configuration's fitted temperature and how calibrated it is before and after."""

    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    voxels: int
    cases: int

    def to_json(self) -> dict[str, Any]:
        return {"temperature": round(self.temperature, 6), "ece_before": self.ece_before,
                "ece_after": self.ece_after, "nll_before": self.nll_before,
                "nll_after": self.nll_after, "voxels": self.voxels, "cases": self.cases,
                "method": "temperature scaling, NLL on cross-validation voxels "
                          "(brain + lesion, <= 100000 per case)"}  # fmt: skip


def case_voxels(
    npz: Path, reference: Path, image: Path | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(log p (K, N), labels (N,))`` of the sampled voxels of one validation case."""
    labels, _ = read_volume(reference)
    probabilities = read_probabilities(npz)
    region = labels > 0
    if image is not None and image.is_file():
        region |= read_volume(image)[0] != 0
    else:
        region[...] = True
    where = np.flatnonzero(region)
    if where.size > VOXELS_PER_CASE:
        where = np.sort(rng.choice(where, VOXELS_PER_CASE, replace=False))
    flat = probabilities.reshape(probabilities.shape[0], -1)[:, where]
    return log_probabilities(flat), labels.reshape(-1)[where].astype(np.int64)


def collect_voxels(folders: Sequence[Path], raw: RawDataset) -> tuple[np.ndarray, np.ndarray, int]:
    """Sampled voxels of every validation case of the folders: ``(log p, labels, cases)``."""
    ending = raw.dataset_json.file_ending
    rng = np.random.default_rng(SEED)
    logs, labels, cases = [], [], 0
    for folder in folders:
        for case_id, npz in probability_files(Path(folder)).items():
            reference = raw.labels_tr / f"{case_id}{ending}"
            if not reference.is_file():
                continue
            image = raw.images_tr / f"{case_id}_0000{ending}"
            log_p, truth = case_voxels(npz, reference, image, rng)
            logs.append(log_p)
            labels.append(truth)
            cases += 1
    if not cases:
        return np.zeros((2, 0)), np.zeros(0, np.int64), 0
    return np.concatenate(logs, axis=1), np.concatenate(labels), cases


def _scores(log_p: np.ndarray, labels: np.ndarray, temperature: float) -> tuple[float, float]:
    """``(ECE, NLL)`` of the probabilities with the logits divided by ``temperature``."""
    scaled = scaled_log_softmax(log_p, temperature)
    bins = CalibrationBins()
    bins.add(np.exp(scaled), labels)
    return bins.ece, negative_log_likelihood(scaled, labels)


def calibrate_configuration(folders: Sequence[Path], raw: RawDataset) -> Calibration | None:
    """Fit the temperature of one configuration's validation predictions.

    Returns:
        The fit, or None when no validation case saved probabilities.
    """
    log_p, labels, cases = collect_voxels(folders, raw)
    if cases == 0 or labels.size == 0:
        return None
    temperature = fit_temperature(log_p, labels)
    ece_before, nll_before = _scores(log_p, labels, 1.0)
    ece_after, nll_after = _scores(log_p, labels, temperature)
    return Calibration(temperature, ece_before, ece_after, nll_before, nll_after,
                       int(labels.size), cases)  # fmt: skip
