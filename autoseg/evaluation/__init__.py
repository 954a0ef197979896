"""Evaluation: per-case metrics, challenge lesion conventions, folder summaries (DESIGN §9).

Needs only numpy, scipy and cc3d (plus :mod:`autoseg.data.io` to read files), so it can
score any two label folders, whatever produced them.
"""

from autoseg.evaluation.folders import evaluate_folders
from autoseg.evaluation.lesions import CONVENTIONS, LesionCounts, count_lesions
from autoseg.evaluation.metrics import METRIC_KEYS, evaluate_case, evaluate_labels
from autoseg.evaluation.surface import hd95_and_assd

__all__ = [
    "CONVENTIONS",
    "METRIC_KEYS",
    "LesionCounts",
    "count_lesions",
    "evaluate_case",
    "evaluate_folders",
    "evaluate_labels",
    "hd95_and_assd",
]
