"""Gap 7: bad flags are bad usage: exit 2 with one line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autoseg import cli
from autoseg.cli import EXIT_INVALID
from tests.pipeline.model_helpers import hybrid_spec, make_plans, make_workspace, write_results
from tests.reliability.helpers import CliMain, run_cli

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    """A workspace with a trained (tiny, untrained-weights) 3d_hybrid of two folds."""
    workspace = make_workspace(tmp_path, cases=2)
    write_results(workspace, make_plans({"3d_hybrid": hybrid_spec()}))
    return tmp_path


def _predict(home: Path, *flags: str) -> list[str]:
    images = home / "raw" / "Tiny" / "imagesTr"
    return ["-i", str(images), "-o", str(home / "out"), "-d", "Tiny", "--home", str(home),
            "--no-progress", *flags]  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--part-id", "2", "--num-parts", "2"], "--part-id 2: must lie in 0..1 (--num-parts 2)"),
        (["--part-id", "-1"], "--part-id -1: must lie in 0..0 (--num-parts 1)"),
        (["--step", "0"], "--step 0.0: must lie in (0, 1] (a fraction of the patch)"),
        (["--step", "1.5"], "--step 1.5: must lie in (0, 1] (a fraction of the patch)"),
        (["--device", "gpu"], "--device gpu: not a device (use auto, cpu, cuda, cuda:N or mps)"),
    ],
)
def test_predict_flags_out_of_range(trained: Path, flags: list[str], message: str, capsys) -> None:
    code, err = run_cli(cli.predict_main, _predict(trained, *flags), capsys)
    assert (code, err.strip()) == (EXIT_INVALID, f"error: {message}")
    assert not (trained / "out").exists()


def test_predict_num_parts_zero(trained: Path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.predict_main(_predict(trained, "--num-parts", "0"))
    assert stop.value.code == EXIT_INVALID
    assert capsys.readouterr().err.splitlines() == [
        "autoseg_predict: error: argument --num-parts: must be a positive integer, got 0 "
        "(see autoseg_predict --help)"
    ]


@NO_CUDA
def test_predict_on_cuda_without_cuda(trained: Path, capsys) -> None:
    code, err = run_cli(cli.predict_main, _predict(trained, "--device", "cuda"), capsys)
    assert (code, err.strip()) == (
        EXIT_INVALID,
        "error: --device cuda: this machine has no CUDA device; use --device cpu (or auto)",
    )


@NO_CUDA
@pytest.mark.parametrize("main", [cli.train_main, cli.demo_main])
def test_train_and_demo_on_cuda_without_cuda(tmp_path: Path, main: CliMain, capsys) -> None:
    argv = ["Tiny", "3d_hybrid", "0"] if main is cli.train_main else []
    code, err = run_cli(main, [*argv, "--home", str(tmp_path), "--device", "cuda:1"], capsys)
    assert (code, err.strip()) == (
        EXIT_INVALID,
        "error: --device cuda:1: this machine has no CUDA device; use --device cpu (or auto)",
    )
    assert list(tmp_path.iterdir()) == []  # the demo wrote no data first


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "a dataset name must not be empty"),
        ("../../x", "dataset name '../../x' must be one folder name (no '/', '\\' or '..')"),
        ("..", "dataset name '..' must be one folder name (no '/', '\\' or '..')"),
        ("a/b", "dataset name 'a/b' must be one folder name (no '/', '\\' or '..')"),
    ],
)
def test_dataset_names_must_be_one_folder_name(
    tmp_path: Path, name: str, message: str, capsys
) -> None:
    home = tmp_path / "deep" / "home"
    home.mkdir(parents=True)
    source = tmp_path / "src"
    source.mkdir()
    with pytest.raises(SystemExit) as stop:
        cli.convert_main(["atlas", str(source), "-d", name, "--home", str(home)])
    assert stop.value.code == EXIT_INVALID
    assert capsys.readouterr().err.splitlines() == [
        f"autoseg_convert: error: argument -d/--dataset: {message} (see autoseg_convert --help)"
    ]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "home", "src"]


def test_library_refuses_an_empty_dataset_name(tmp_path: Path) -> None:
    """``raw / ""`` is the raw root itself: planning it would treat the root as a dataset."""
    from autoseg.core.errors import InvalidInputError
    from autoseg.core.run_layout import resolve_dataset_dir

    with pytest.raises(InvalidInputError, match="a dataset name must not be empty"):
        resolve_dataset_dir(tmp_path, "")
