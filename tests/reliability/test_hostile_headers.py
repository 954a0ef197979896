"""Gap 1: a header is not a promise; sizes are checked before voxels are allocated."""

from __future__ import annotations

import gzip
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.cli import EXIT_INVALID, verify_main
from autoseg.core.errors import InvalidInputError
from autoseg.data import capacity, io
from autoseg.data.io import read_volume
from tests.conftest import write_tiny_dataset
from tests.reliability.helpers import error_lines, lying_nifti, run_cli

LIMIT_BYTES = 64 * 1024**2  # far below the 1.9 GiB the headers claim


def _read_peak(path: Path) -> tuple[str, int]:
    """The read's error message and the peak memory Python/numpy allocated for it."""
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInputError) as caught:
            read_volume(path)
        return str(caught.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", ["lie.nii", "lie.nii.gz"])
def test_lying_nifti_header_is_refused_before_allocating(tmp_path: Path, name: str) -> None:
    path = lying_nifti(tmp_path / name)
    message, peak = _read_peak(path)
    assert message.startswith(f"{path}: header claims 800x800x800 voxels of 4 bytes (1.9 GiB)")
    assert "truncated, or a corrupt header" in message
    assert peak < LIMIT_BYTES


def _metaimage(tmp_path: Path, compressed: bool, edit: tuple[bytes, bytes]) -> Path:
    path = tmp_path / f"case_{int(compressed)}.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 5, 6), np.float32)), str(path),
                    useCompression=compressed)  # fmt: skip
    path.write_bytes(path.read_bytes().replace(*edit))
    return path


@pytest.mark.parametrize("compressed", [False, True])
def test_lying_metaimage_header_is_refused_before_allocating(
    tmp_path: Path, compressed: bool
) -> None:
    path = _metaimage(tmp_path, compressed, (b"DimSize = 6 5 4", b"DimSize = 800 800 800"))
    message, peak = _read_peak(path)
    assert message.startswith(f"{path}: header claims 800x800x800 voxels of 4 bytes")
    assert peak < LIMIT_BYTES


def test_lying_nrrd_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "case.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 5, 6), np.float32)), str(path))
    path.write_bytes(path.read_bytes().replace(b"sizes: 6 5 4", b"sizes: 800 800 800"))
    message, peak = _read_peak(path)
    assert message.startswith(f"{path}: header claims 800x800x800 voxels")
    assert peak < LIMIT_BYTES


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ((b"NDims = 3", b"NDims = x"), "corrupt MetaImage header: NDims must be 1-4, got 'x'"),
        ((b"MET_FLOAT", b"MET_FLAOT"), "unknown ElementType 'MET_FLAOT'"),
        ((b"DimSize = 6 5 4", b"DimSize = 6 5"), "DimSize must be 3 positive integers"),
    ],
)
def test_corrupt_metaimage_header_gives_the_real_reason(
    tmp_path: Path, edit: tuple[bytes, bytes], reason: str
) -> None:
    path = _metaimage(tmp_path, False, edit)
    with pytest.raises(InvalidInputError) as caught:
        read_volume(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and reason in message
    assert "No such file or directory" not in message


def test_truncated_metaimage_data_says_so(tmp_path: Path) -> None:
    path = _metaimage(tmp_path, False, (b"", b""))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InvalidInputError, match="holds 380 B of data: truncated"):
        read_volume(path)


def test_large_compressed_claim_is_counted_by_streaming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past deflate's bound, the stream is counted (not kept) and the shortfall named."""
    monkeypatch.setattr(capacity, "STREAM_CHECK_BYTES", 1024)
    path = lying_nifti(tmp_path / "lie.nii", claimed_xyz=(64, 64, 64))
    noise = np.random.default_rng(0).integers(0, 255, 200_000, np.uint8).tobytes()
    gz = tmp_path / "lie.nii.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()) + gzip.compress(noise))  # two members
    with pytest.raises(InvalidInputError, match=r"holds 195\.7 KiB of data"):
        read_volume(gz)


def test_memory_error_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_tiny_dataset(tmp_path / "raw" / "Tiny", cases=1)
    path = root / "imagesTr" / "case000_0000.nii.gz"

    def no_memory(_: object) -> np.ndarray:
        raise MemoryError()

    monkeypatch.setattr(io.np, "asanyarray", no_memory)
    with pytest.raises(InvalidInputError, match=f"^{path}: out of memory reading"):
        read_volume(path)


def test_claim_beyond_available_memory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_tiny_dataset(tmp_path / "raw" / "Tiny", cases=1)
    path = root / "imagesTr" / "case000_0000.nii.gz"
    monkeypatch.setattr(capacity, "available_memory_bytes", lambda: 1000)
    with pytest.raises(InvalidInputError, match=f"^{path}: reading .* only 1000 B available"):
        read_volume(path)


def test_verify_refuses_the_lying_file_and_keeps_the_others(tmp_path: Path, capsys) -> None:
    root = write_tiny_dataset(tmp_path / "raw" / "Tiny", cases=2)
    lying = lying_nifti(root / "imagesTr" / "case001_0000.nii.gz")
    before = sorted(os.listdir(root / "imagesTr"))
    code, err = run_cli(verify_main, ["-d", "Tiny", "--home", str(tmp_path), "--no-progress",
                                      "-np", "1"], capsys)  # fmt: skip
    assert code == EXIT_INVALID
    (line,) = error_lines(err)
    assert line.startswith(f"error: {lying}: header claims 800x800x800 voxels of 4 bytes (1.9 GiB)")
    assert line.endswith("KiB of data: truncated, or a corrupt header")
    assert sorted(os.listdir(root / "imagesTr")) == before
