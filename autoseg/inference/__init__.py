"""Inference: sliding window (a pure function), mirroring TTA, fold and file ensembling,
revert to the input's geometry, postprocessing, and the folder predictor (DESIGN §8).

Arrays are ``(C, Z, Y, X)``, spacings ``(z, y, x)`` mm (see :mod:`autoseg`). Within one
network, windows and mirrors are averaged as logits; across networks and saved files, as
probabilities.
"""

from autoseg.inference.case_prediction import predict_case, predict_logits
from autoseg.inference.ensemble import average_probability_files, ensemble_folders, pair_cases
from autoseg.inference.folder_prediction import CasePredictionError, predict_folder, select_part
from autoseg.inference.inputs import discover_cases, verify_inputs
from autoseg.inference.outputs import CaseOutputs, case_outputs, read_probabilities
from autoseg.inference.postprocess import postprocess, remove_small_components, threshold_labels
from autoseg.inference.settings import InferenceSettings
from autoseg.inference.slices import slice_stack
from autoseg.inference.sliding_window import sliding_window_inference
from autoseg.inference.tiles import tile_positions, window_starts
from autoseg.inference.tta import mirror_combinations, mirrored

__all__ = [
    "CaseOutputs",
    "CasePredictionError",
    "InferenceSettings",
    "average_probability_files",
    "case_outputs",
    "discover_cases",
    "ensemble_folders",
    "mirror_combinations",
    "mirrored",
    "pair_cases",
    "postprocess",
    "predict_case",
    "predict_folder",
    "predict_logits",
    "read_probabilities",
    "remove_small_components",
    "select_part",
    "slice_stack",
    "sliding_window_inference",
    "threshold_labels",
    "tile_positions",
    "verify_inputs",
    "window_starts",
]
