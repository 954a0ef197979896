"""Fixtures for inference tests: a tiny oblique dataset, a spec and a 1x1-conv network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from autoseg.inference.settings import InferenceSettings
from autoseg.plans.preprocessing import ChannelNormalization, PreprocessingSpec
from tests.conftest import tiny_meta, write_tiny_dataset


def bright_is_lesion() -> nn.Module:
    """1x1 conv: class-1 logit = 2 * intensity, class-0 logit = 0 (lesion where z-score > 0)."""
    conv = nn.Conv3d(1, 2, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[1, 0] = 2.0
    return conv.eval()


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    """imagesTr of a 3-case oblique dataset (``case000`` .. ``case002``)."""
    root = write_tiny_dataset(tmp_path / "raw" / "Tiny", cases=3, meta=tiny_meta(oblique=True))
    return root / "imagesTr"


@pytest.fixture
def spec() -> PreprocessingSpec:
    return PreprocessingSpec(
        spacing_mm=(3.0, 2.0, 2.0),
        normalization=(ChannelNormalization("zscore"),),
        foreground_samples=10,
    )


@pytest.fixture
def settings() -> InferenceSettings:
    return InferenceSettings(patch_size=(4, 8, 8), num_classes=2, mirror_axes=(0, 1, 2))
