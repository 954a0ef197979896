"""File names and formats of a prediction folder that several stages read.

The predictor writes them (:mod:`autoseg.inference.outputs`,
:mod:`autoseg.inference.uncertainty`); the ensembler, find_best, the lesion tables
(:mod:`autoseg.evaluation.lesion_files`) and the report read them. Per case:

- ``<case>.npz``: key ``probabilities``, ``(K, Z, Y, X)`` float16/float32 in the input grid,
  and ``<case>.json`` its geometry (:func:`autoseg.inference.outputs.write_sidecar`);
- ``<case>_uncertainty<ending>``: predictive entropy, ``<case>_disagreement<ending>``: the
  fraction of ensemble members whose argmax differs from the final label;
- ``<case>_lesions.json``: per-lesion confidence of ``--save-uncertainty``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autoseg.core.atomic import atomic_path
from autoseg.core.errors import InvalidInputError

PROBABILITIES_KEY = "probabilities"
PROBABILITIES_ENDING = ".npz"
SIDECAR_ENDING = ".json"  # <case>.json: the geometry an ensemble writes labels in
UNCERTAINTY_SUFFIX = "_uncertainty"
DISAGREEMENT_SUFFIX = "_disagreement"
LESIONS_SUFFIX = "_lesions.json"


def write_probabilities(path: Path, probabilities: np.ndarray, dtype: str = "float16") -> None:
    """Write ``probabilities (K, Z, Y, X)`` as a compressed npz, atomically."""
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        np.savez_compressed(handle, **{PROBABILITIES_KEY: probabilities.astype(dtype)})


def read_probabilities(path: Path) -> np.ndarray:
    """The ``probabilities`` array of an npz file, naming the file when it is unusable."""
    try:
        with np.load(path) as npz:
            return npz[PROBABILITIES_KEY]
    except KeyError as error:
        raise InvalidInputError(f"{path}: no '{PROBABILITIES_KEY}' array") from error
    except (OSError, ValueError, EOFError) as error:
        raise InvalidInputError(f"{path}: unreadable npz ({error})") from error
