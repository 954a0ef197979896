"""Gap 4: outputs are checked before the work: exit 2, one line naming the folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoseg import cli
from autoseg.cli import EXIT_INVALID
from autoseg.pipeline import predict_step as predict_module
from tests.conftest import write_tiny_dataset
from tests.reliability.helpers import CliMain, error_lines, read_only_dir, run_cli

__all__ = ["read_only_dir"]  # the fixture, imported for pytest


@pytest.fixture
def no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object, **__: object) -> None:
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(predict_module, "load_models", fail)


def _predict_argv(tmp_path: Path, output: Path) -> list[str]:
    root = write_tiny_dataset(tmp_path / "raw" / "Tiny", cases=1)
    return ["-i", str(root / "imagesTr"), "-o", str(output), "-d", "Tiny", "--home",
            str(tmp_path), "--no-progress"]  # fmt: skip


def test_predict_into_a_read_only_folder_fails_before_loading(
    tmp_path: Path, read_only_dir: Path, no_model_loading: None, capsys
) -> None:
    output = read_only_dir / "predictions"
    code, err = run_cli(cli.predict_main, _predict_argv(tmp_path, output), capsys)
    assert code == EXIT_INVALID
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: {output}: output folder is not writable: ")
    assert not output.exists()


def test_predict_into_a_file_fails_before_loading(
    tmp_path: Path, no_model_loading: None, capsys
) -> None:
    output = tmp_path / "predictions"
    output.write_text("not a folder")
    code, err = run_cli(cli.predict_main, _predict_argv(tmp_path, output), capsys)
    assert (code, err.strip()) == (EXIT_INVALID, f"error: {output}: output folder is a file, "
                                                 "not a folder")  # fmt: skip
    assert output.read_text() == "not a folder"


def _commands(tmp_path: Path, blocker: Path) -> dict[str, tuple[CliMain, list[str], str]]:
    """Every writing command pointed at an output below (or being) the file ``blocker``."""
    raw = write_tiny_dataset(tmp_path / "raw" / "Tiny", cases=1)
    (tmp_path / "results" / "Tiny").mkdir(parents=True)
    image, label = raw / "imagesTr" / "case000_0000.nii.gz", raw / "labelsTr" / "case000.nii.gz"
    home = ["--home", str(tmp_path)]
    below = f"cannot be made: {blocker} is a file"
    return {
        "synth": (cli.synth_main, ["atlas", str(blocker), "--size", "tiny", "--cases", "1"],
                  f"{blocker}: destination folder is a file, not a folder"),
        "convert": (cli.convert_main, ["atlas", str(tmp_path), "-d", "A", "--raw", str(blocker)],
                    f"{blocker / 'A'}: raw dataset folder {below}"),
        "plan": (cli.plan_main, ["-d", "Tiny", *home, "--preprocessed", str(blocker)],
                 f"{blocker / 'Tiny'}: preprocessed folder {below}"),
        "train": (cli.train_main, ["Tiny", "3d_hybrid", "0", *home, "--results", str(blocker)],
                  f"{blocker}: results folder is a file, not a folder"),
        "predict": (cli.predict_main, ["-i", str(raw / "imagesTr"), "-o", str(blocker / "p"),
                                       "-d", "Tiny", *home],
                    f"{blocker / 'p'}: output folder {below}"),
        "export": (cli.export_main, ["-d", "Tiny", "-o", str(blocker / "m.zip"), *home],
                   f"{blocker}: folder of the model zip is a file, not a folder"),
        "ensemble": (cli.ensemble_main, ["-i", str(raw), "-o", str(blocker)],
                     f"{blocker}: output folder is a file, not a folder"),
        "evaluate": (cli.evaluate_main, ["-r", str(raw / "labelsTr"), "-p", str(raw / "labelsTr"),
                                         "-o", str(blocker / "summary.json")],
                     f"{blocker}: folder of the summary JSON is a file, not a folder"),
        "report": (cli.report_main, ["-d", "Tiny", "-o", str(blocker / "r.html"), *home],
                   f"{blocker}: folder of the report is a file, not a folder"),
        "visualize": (cli.visualize_main, [str(image), str(label), "-o", str(blocker / "o.png")],
                      f"{blocker}: folder of the overlay PNG is a file, not a folder"),
        "slurm": (cli.slurm_main, ["Tiny", "3d_hybrid", "-o", str(blocker / "t.sbatch")],
                  f"{blocker}: folder of the sbatch script is a file, not a folder"),
        "demo": (cli.demo_main, ["--home", str(blocker)],
                 f"{blocker}: demo folder is a file, not a folder"),
    }  # fmt: skip


COMMANDS = ["synth", "convert", "plan", "train", "predict", "export", "ensemble", "evaluate",
            "report", "visualize", "slurm", "demo"]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_writing_command_checks_its_output_first(
    tmp_path: Path, command: str, capsys
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    main, argv, message = _commands(tmp_path, blocker)[command]
    code, err = run_cli(main, argv, capsys)
    assert code == EXIT_INVALID, err
    assert error_lines(err) == [f"error: {message}"]
    assert blocker.read_text() == "a file where a folder should be"


def test_find_best_checks_the_results_folder(tmp_path: Path, read_only_dir: Path, capsys) -> None:
    """``results/<NAME>`` itself read-only: find_best would fail writing inference.json."""
    argv = [read_only_dir.name, "--results", str(read_only_dir.parent)]
    code, err = run_cli(cli.find_best_main, argv, capsys)
    assert code == EXIT_INVALID
    (line,) = error_lines(err)
    assert line.startswith(f"error: {read_only_dir}: results folder is not writable: ")
