"""Shared fixtures: tiny raw datasets written as real NIfTI files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from autoseg.data.io import write_volume
from autoseg.data.layout import DatasetJson, write_dataset_json
from autoseg.data.records import ImageMeta, matrix_to_tuple

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
REALDATA_DIR = SHARED_DIR / "realdata"


def oblique_affine(spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """An oblique RAS affine (rotated about two axes) with the given spacing."""
    angle_a, angle_b = np.deg2rad(12.0), np.deg2rad(-7.0)
    rot_z = np.array(
        [
            [np.cos(angle_a), -np.sin(angle_a), 0],
            [np.sin(angle_a), np.cos(angle_a), 0],
            [0, 0, 1],
        ]
    )
    rot_x = np.array(
        [
            [1, 0, 0],
            [0, np.cos(angle_b), -np.sin(angle_b)],
            [0, np.sin(angle_b), np.cos(angle_b)],
        ]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot_z @ rot_x @ np.diag(spacing_zyx[::-1])
    affine[:3, 3] = (-40.5, 22.25, -13.0)
    return affine


def tiny_meta(
    shape_zyx: tuple[int, int, int] = (8, 12, 10),
    spacing_zyx: tuple[float, float, float] = (3.0, 1.5, 1.25),
    oblique: bool = False,
) -> ImageMeta:
    affine = oblique_affine(spacing_zyx) if oblique else np.diag([*spacing_zyx[::-1], 1.0])
    return ImageMeta(
        shape=shape_zyx,
        spacing_mm=spacing_zyx,
        affine=matrix_to_tuple(affine),
        qform_code=1,
        sform_code=1,
    )


def write_tiny_dataset(
    root: Path,
    cases: int = 3,
    channels: int = 1,
    meta: ImageMeta | None = None,
    seed: int = 0,
) -> Path:
    """Write a raw dataset (nnU-Net layout) of small random images with a cubic lesion."""
    meta = meta or tiny_meta()
    rng = np.random.default_rng(seed)
    ending = ".nii.gz"
    for index in range(cases):
        case_id = f"case{index:03d}"
        for channel in range(channels):
            image = rng.normal(100.0, 10.0, meta.shape).astype(np.float32)
            write_volume(root / "imagesTr" / f"{case_id}_{channel:04d}{ending}", image, meta)
        label = np.zeros(meta.shape, np.uint8)
        label[2:5, 3 + index % 3 : 7, 2:6] = 1
        write_volume(root / "labelsTr" / f"{case_id}{ending}", label, meta)
    dataset_json = DatasetJson(
        name=root.name,
        channel_names={str(c): "T1" if c == 0 else f"MR{c}" for c in range(channels)},
        labels={"background": 0, "lesion": 1},
        num_training=cases,
        file_ending=ending,
    )
    write_dataset_json(root, dataset_json)
    return root


@pytest.fixture(autouse=True)
def planning_without_bf16() -> Iterator[None]:
    """Plan as on a CPU where bf16 is not faster, so CPU plans in tests do not depend on
    the host (tests of the bf16 rule patch it back on), and never time bf16 in a child:
    without AMX, training and prediction in tests run in float32."""
    with (
        mock.patch("autoseg.planning.device.cpu_bf16_faster", return_value=False),
        mock.patch("autoseg.networks.bf16_speed.measured_speed", return_value=None),
    ):
        yield


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """A valid 3-case, single-channel raw dataset folder named ``Tiny``."""
    return write_tiny_dataset(tmp_path / "raw" / "Tiny")


@pytest.fixture
def dataset_factory(tmp_path: Path) -> Callable[..., Path]:
    """Write raw datasets with chosen case/channel counts and geometry under tmp_path."""

    def make(name: str = "Tiny", **kwargs: object) -> Path:
        return write_tiny_dataset(tmp_path / "raw" / name, **kwargs)

    return make


@pytest.fixture
def realdata_dir() -> Path:
    """The real ISLES'22 sample files, or a skip when ../shared is not beside the repo."""
    if not REALDATA_DIR.is_dir():
        pytest.skip("../shared/realdata is not available")
    return REALDATA_DIR
