"""What a prediction leaves on disk, shared by the predictor and the ensembler.

Per case, in the output folder:

- ``<case><ending>``: uint8 labels in the input's exact grid and header (written last, so
  its presence means the case is finished);
- with probabilities: ``<case>.npz`` (key ``probabilities``, ``(K, Z, Y, X)`` float16 or
  float32, original geometry) and ``<case>.json`` (``{"case_id", "num_classes", "meta":
  ImageMeta.to_json()}``) so an ensemble can write labels in the right frame later.

Every file is written atomically: it appears whole or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.core.atomic import read_json, write_json
from autoseg.core.errors import InvalidInputError
from autoseg.data.io import write_label
from autoseg.data.prediction_files import (
    PROBABILITIES_ENDING,
    PROBABILITIES_KEY,
    SIDECAR_ENDING,
    read_probabilities,
    write_probabilities,
)
from autoseg.data.records import ImageMeta
from autoseg.inference.postprocess import postprocess

__all__ = ["PROBABILITIES_KEY", "CaseOutputs", "case_outputs", "read_probabilities",
           "read_sidecar", "select_pending", "write_case", "write_probabilities",
           "write_sidecar"]  # fmt: skip


@dataclass(frozen=True)
class CaseOutputs:
    """The output files of one case (probability paths are None when not saved)."""

    case_id: str
    labels: Path
    probabilities: Path | None = None
    sidecar: Path | None = None

    @property
    def files(self) -> list[Path]:
        return [p for p in (self.probabilities, self.sidecar, self.labels) if p is not None]

    def finished(self) -> bool:
        """True when every output exists (atomic writes: existing means complete)."""
        return all(p.is_file() for p in self.files)


def case_outputs(
    output_dir: Path, case_id: str, ending: str = ".nii.gz", probabilities: bool = False
) -> CaseOutputs:
    """Where a case's outputs go."""
    output_dir = Path(output_dir)
    if not probabilities:
        return CaseOutputs(case_id, output_dir / f"{case_id}{ending}")
    return CaseOutputs(
        case_id,
        output_dir / f"{case_id}{ending}",
        output_dir / f"{case_id}{PROBABILITIES_ENDING}",
        output_dir / f"{case_id}{SIDECAR_ENDING}",
    )


def select_pending(
    outputs: Sequence[CaseOutputs], overwrite: bool, resume: bool
) -> list[CaseOutputs]:
    """The cases still to do; refuses to touch finished outputs unless asked.

    Raises:
        InvalidInputError: finished outputs exist and neither ``overwrite`` nor ``resume``
            says what to do with them (one line per case).
    """
    if overwrite:
        return list(outputs)
    finished = [o for o in outputs if o.finished()]
    if finished and not resume:
        raise InvalidInputError(
            [
                f"{o.labels}: exists; use --continue to skip finished cases "
                "or --overwrite to redo them"
                for o in finished
            ]
        )
    return [o for o in outputs if not o.finished()]


def write_sidecar(path: Path, case_id: str, meta: ImageMeta, num_classes: int) -> None:
    """The geometry an ensemble needs to write this case's labels (atomic JSON)."""
    write_json(path, {"case_id": case_id, "num_classes": num_classes, "meta": meta.to_json()})


def read_sidecar(path: Path) -> ImageMeta:
    """Geometry from a sidecar (``{"meta": ...}``, or a bare ImageMeta JSON)."""
    payload: Any = read_json(path)
    try:
        return ImageMeta.from_json(payload.get("meta", payload))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InvalidInputError(f"{path}: not a prediction sidecar ({error})") from error


def write_case(
    outputs: CaseOutputs,
    probabilities: np.ndarray,
    meta: ImageMeta,
    postprocessing: dict[str, Any],
    probability_dtype: str = "float16",
) -> None:
    """Write labels (argmax, then postprocessing) and, when asked, probabilities + sidecar.

    Args:
        outputs: the case's paths.
        probabilities: ``(K, Z, Y, X)`` in the geometry of ``meta``.
        meta: the input's geometry and header.
        postprocessing: see :func:`autoseg.inference.postprocess.postprocess`.
        probability_dtype: npz dtype of the probabilities.
    """
    if outputs.probabilities is not None:
        write_probabilities(outputs.probabilities, probabilities, probability_dtype)
    if outputs.sidecar is not None:
        write_sidecar(outputs.sidecar, outputs.case_id, meta, probabilities.shape[0])
    labels = np.argmax(probabilities, axis=0).astype(np.uint8)
    labels = postprocess(labels, postprocessing, probabilities, meta.spacing_mm)
    write_label(outputs.labels, labels, meta)
