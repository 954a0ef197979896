"""ONNX export: onnxruntime on the CPU reproduces PyTorch's eval logits, at two sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autoseg.networks.export import export_onnx
from tests.networks.conftest import TINY, tiny_network

ort = pytest.importorskip("onnxruntime")


def _other_patch(patch: tuple[int, ...]) -> tuple[int, ...]:
    """A second patch size (doubled last axis), to check the spatial axes are dynamic."""
    return (*patch[:-1], 2 * patch[-1])


def test_onnx_matches_pytorch(name: str, tmp_path: Path) -> None:
    kwargs, patch, _ = TINY[name]
    net = tiny_network(name).train()
    path = export_onnx(net, kwargs["in_channels"], patch, tmp_path / f"{name}.onnx")
    assert net.training  # export leaves the mode as it found it
    net.eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size, batch in ((patch, 1), (_other_patch(patch), 3)):
        x = torch.randn(batch, kwargs["in_channels"], *size)
        with torch.no_grad():
            expected = net(x).numpy()
        (got,) = session.run(["logits"], {"image": x.numpy()})
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
