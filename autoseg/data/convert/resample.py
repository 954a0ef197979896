"""Putting a channel shipped on its own grid onto the case's grid, by world coordinates.

ISLES'22 ships FLAIR in its native space (e.g. 512 x 512 x 29 at 0.45 x 0.45 x 5 mm) while
DWI, ADC and the mask share the 2 mm DWI grid. Every channel of a case must share one
grid, so FLAIR is resampled: each DWI voxel takes the FLAIR value (linear interpolation,
SimpleITK) at the same scanner-space point, through both files' affines. Nothing is
registered: the scanner put both series in one world frame, and that is the frame used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from autoseg.data.io import read_meta, read_volume, to_sitk
from autoseg.data.records import ImageMeta

METHOD = "SimpleITK linear interpolation by world (scanner) coordinates, no registration"


def resample_to_grid(array_zyx: np.ndarray, meta: ImageMeta, target: ImageMeta) -> np.ndarray:
    """``array`` (in ``meta``'s grid) resampled onto ``target``'s grid, float32 (Z, Y, X).

    Points of the target grid outside the source's field of view get 0.
    """
    moving = to_sitk(np.ascontiguousarray(array_zyx, dtype=np.float32), meta)
    reference = to_sitk(np.zeros(target.shape, np.float32), target)
    resampled = sitk.Resample(moving, reference, sitk.Transform(), sitk.sitkLinear, 0.0,
                              sitk.sitkFloat32)  # fmt: skip
    return sitk.GetArrayFromImage(resampled)


@dataclass(frozen=True)
class ResampledSource:
    """An image channel read from ``path`` and resampled onto the grid of ``reference``.

    Written with the reference's header (affine, qform/sform codes), as every other
    channel of the case is.
    """

    path: Path
    reference: Path

    def read(self) -> tuple[np.ndarray, ImageMeta]:
        """``(array (Z, Y, X) float32 on the reference grid, reference meta)``."""
        array, meta = read_volume(self.path)
        target = read_meta(self.reference)
        return resample_to_grid(array, meta, target), target
