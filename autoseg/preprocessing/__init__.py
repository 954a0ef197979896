"""Preprocessing: crop, resample, normalise (pure array functions), the single-case path
shared with inference, and the npz cache (DESIGN §1, §6, §8).

Arrays are ``(C, Z, Y, X)``, spacings ``(z, y, x)`` mm (see :mod:`autoseg`).
"""

from autoseg.plans.preprocessing import ChannelNormalization, PreprocessingSpec
from autoseg.preprocessing.cache import cached_case_ids, is_finished, load_case, save_case
from autoseg.preprocessing.case import (
    preprocess_arrays,
    preprocess_case,
    read_case,
    revert_prediction,
    revert_probabilities,
)
from autoseg.preprocessing.crop import CropBox
from autoseg.preprocessing.dataset import CasePreprocessingError, cache_folder, preprocess_dataset
from autoseg.preprocessing.properties import CaseProperties, PreprocessedCase

__all__ = [
    "CasePreprocessingError",
    "CaseProperties",
    "ChannelNormalization",
    "CropBox",
    "PreprocessedCase",
    "PreprocessingSpec",
    "cache_folder",
    "cached_case_ids",
    "is_finished",
    "load_case",
    "preprocess_arrays",
    "preprocess_case",
    "preprocess_dataset",
    "read_case",
    "revert_prediction",
    "revert_probabilities",
    "save_case",
]
