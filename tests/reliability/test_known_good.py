"""Hostile inputs autoseg already handled well, kept so: each refused with exit 2, one line
naming the file, and nothing that existed before touched."""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from autoseg import cli
from autoseg.cli import EXIT_INVALID
from autoseg.data.io import write_label, write_volume
from autoseg.data.records import ImageMeta, matrix_to_tuple
from tests.conftest import tiny_meta, write_tiny_dataset
from tests.pipeline.model_helpers import hybrid_spec, make_plans, make_workspace, write_results
from tests.reliability.helpers import error_lines, run_cli


def _digest(root: Path) -> dict[str, str]:
    """Every file below ``root`` with its content hash: "nothing earlier was lost"."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _verify(home: Path, capsys) -> tuple[int, list[str]]:
    argv = ["-d", "Tiny", "--home", str(home), "--no-progress", "-np", "1"]
    code, err = run_cli(cli.verify_main, argv, capsys)
    return code, error_lines(err)


def _shifted(meta: ImageMeta, mm: float) -> ImageMeta:
    affine = meta.affine_array.copy()
    affine[0, 3] += mm
    return ImageMeta(meta.shape, meta.spacing_mm, matrix_to_tuple(affine), qform_code=1,
                     sform_code=1)  # fmt: skip


def _nan_image(root: Path) -> tuple[Path, str]:
    path = root / "imagesTr" / "case001_0000.nii.gz"
    image = np.random.default_rng(0).normal(size=tiny_meta().shape).astype(np.float32)
    image[0, 0, :3] = [np.nan, np.inf, -np.inf]
    write_volume(path, image, tiny_meta())
    return path, "1 NaN and 2 Inf voxels (of 960); replace them before use"


def _undeclared_label(root: Path) -> tuple[Path, str]:
    path = root / "labelsTr" / "case001.nii.gz"
    label = np.zeros(tiny_meta().shape, np.uint8)
    label[2:4, 2:4, 2:4] = 3
    write_label(path, label, tiny_meta())
    return path, "label values {0,3} include {3}, not declared in dataset.json labels {0,1}"


def _shape_mismatch(root: Path) -> tuple[Path, str]:
    path, small = root / "labelsTr" / "case001.nii.gz", tiny_meta((8, 12, 9))
    label = np.zeros(small.shape, np.uint8)
    label[2, 2, 2] = 1
    write_label(path, label, small)
    return path, "not on the grid of case001_0000.nii.gz: shape [8, 12, 9] != [8, 12, 10]"


def _affine_mismatch(root: Path) -> tuple[Path, str]:
    path = root / "labelsTr" / "case001.nii.gz"
    label = np.zeros(tiny_meta().shape, np.uint8)
    label[2, 2, 2] = 1
    write_label(path, label, _shifted(tiny_meta(), 0.5))
    return path, "affine differs by up to 0.5 mm"


def _truncated(root: Path) -> tuple[Path, str]:
    path = root / "imagesTr" / "case001_0000.nii.gz"
    path.write_bytes(path.read_bytes()[:-200])
    return path, "truncated or corrupt data"


def _fake(root: Path) -> tuple[Path, str]:
    path = root / "imagesTr" / "case001_0000.nii.gz"
    path.write_text("this is not an image\n")
    return path, "unreadable NIfTI"


@pytest.mark.parametrize(
    "damage", [_nan_image, _undeclared_label, _shape_mismatch, _affine_mismatch, _truncated,
               _fake],
)  # fmt: skip
def test_verify_and_plan_refuse_bad_files(tmp_path: Path, damage, capsys) -> None:
    root = write_tiny_dataset(tmp_path / "raw" / "Tiny", cases=2)
    path, reason = damage(root)
    before = _digest(tmp_path)
    code, lines = _verify(tmp_path, capsys)
    assert code == EXIT_INVALID
    (line,) = lines
    assert line.startswith(f"error: {path}: ") and reason in line
    argv = ["-d", "Tiny", "--home", str(tmp_path), "--no-progress", "-np", "1"]
    code, err = run_cli(cli.plan_main, argv, capsys)
    assert (code, error_lines(err)) == (EXIT_INVALID, lines)
    assert _digest(tmp_path) == before  # neither wrote anything, nor changed a file


def test_pickled_npy_is_refused(tmp_path: Path, capsys) -> None:
    source = tmp_path / "src"
    source.mkdir()
    np.save(source / "case_dwi.npy", np.zeros((4, 6, 5), np.float32))
    np.save(source / "case_msk.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    before = _digest(tmp_path)
    argv = ["npy", str(source), "-d", "D", "--home", str(tmp_path), "--spacing", "1", "1", "1"]
    code, err = run_cli(cli.convert_main, argv, capsys)
    assert code == EXIT_INVALID
    (line,) = error_lines(err)
    assert line.startswith(f"error: {source / 'case_msk.npy'}: ")
    assert _digest(tmp_path) == before and not (tmp_path / "raw" / "D").exists()


class _Exploit:
    """Pickles to a call of ``Path.touch`` on a marker: proof it ran if the file appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    workspace = make_workspace(tmp_path, cases=1)
    write_results(
        workspace, make_plans({"3d_hybrid": hybrid_spec()}), {"3d_hybrid": [hybrid_spec()]}
    )
    return tmp_path


def _predict_argv(home: Path, *flags: str) -> list[str]:
    return ["-i", str(home / "raw" / "Tiny" / "imagesTr"), "-o", str(home / "out"), "--device",
            "cpu", "--no-progress", *flags]  # fmt: skip


def test_malicious_checkpoint_is_refused_unrun(trained: Path, capsys) -> None:
    checkpoint = trained / "results" / "Tiny" / "3d_hybrid" / "fold_0" / "checkpoint_final.pt"
    marker = trained / "exploited"
    checkpoint.write_bytes(pickle.dumps({"model": _Exploit(marker)}))
    code, err = run_cli(cli.predict_main, _predict_argv(trained, "-d", "Tiny", "--home",
                                                        str(trained)), capsys)  # fmt: skip
    assert code == EXIT_INVALID
    (line,) = error_lines(err)
    assert line.startswith(f"error: {checkpoint}: refused: the file holds objects other than")
    assert not marker.exists() and not (trained / "out").exists()


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/autoseg-evil.txt", "a/../../evil.txt"])
def test_zip_slip_is_refused(trained: Path, member: str, capsys) -> None:
    model_zip = trained / "zips" / "slip.zip"
    model_zip.parent.mkdir()
    with zipfile.ZipFile(model_zip, "w") as archive:
        archive.writestr("inference_contract.json", "{}")
        archive.writestr(member, "pwned")
    code, err = run_cli(cli.predict_main, _predict_argv(trained, "-m", str(model_zip)), capsys)
    assert code == EXIT_INVALID
    (line,) = error_lines(err)
    assert line.startswith(f"error: {model_zip}: refused: ")
    assert not (trained / "evil.txt").exists() and not (trained / "zips" / "evil.txt").exists()
    assert not Path("/tmp/autoseg-evil.txt").exists()


def test_bad_fold_is_bad_usage(tmp_path: Path, capsys) -> None:
    code, err = run_cli(cli.train_main, ["Tiny", "3d_hybrid", "x", "--home", str(tmp_path),
                                         "--device", "cpu"], capsys)  # fmt: skip
    assert (code, error_lines(err)) == (EXIT_INVALID, ["error: fold must be a number or 'all', "
                                                       "not 'x'"])  # fmt: skip
