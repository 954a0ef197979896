"""The generated sbatch array script: content, bash syntax, and its signal forwarding."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from autoseg.core.errors import InvalidInputError
from autoseg.pipeline.slurm import write_slurm_script
from autoseg.training.trainer import EXIT_INTERRUPTED


def test_script_content_and_syntax(tmp_path: Path) -> None:
    path = write_slurm_script(
        "ATLAS",
        "3d_hybrid",
        [0, 1, 2, 3, 4],
        tmp_path / "train.sbatch",
        partition="gpu",
        gpus=2,
        extra_args=["--epochs", "50"],
    )
    text = path.read_text()
    for line in (
        "#SBATCH --array=0-4",
        "#SBATCH --requeue",
        "#SBATCH --signal=B:USR1@120",
        "#SBATCH --partition=gpu",
        "#SBATCH --gres=gpu:2",
        "FOLDS=(0 1 2 3 4)",
        "trap forward_signal USR1",
        'kill -USR1 "$TRAIN_PID"',
        "scontrol requeue",
        f'"$STATUS" -eq {EXIT_INTERRUPTED}',
        'RESUME="--continue"',
        'autoseg_train ATLAS 3d_hybrid "$FOLD" $RESUME --epochs 50 --num-gpus 2',
    ):
        assert line in text, line
    assert path.stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(path)], check=True)
    with pytest.raises(InvalidInputError, match="at least one fold"):
        write_slurm_script("ATLAS", "3d_hybrid", [], tmp_path / "x.sbatch")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_script_forwards_usr1_and_requeues_on_the_interrupt_code(tmp_path: Path) -> None:
    """Run the script with fake autoseg_train / scontrol: the trap forwards SIGUSR1, the
    fake trainer exits with EXIT_INTERRUPTED, and the script requeues the task."""
    fake = tmp_path / "autoseg_train"
    fake.write_text(
        f"#!/bin/bash\necho \"args: $*\"\ntrap 'exit {EXIT_INTERRUPTED}' USR1\n"
        'touch "$READY"\nwhile true; do sleep 0.1; done\n'
    )
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(f'#!/bin/bash\necho "$*" > {tmp_path}/requeued\n')
    for exe in (fake, scontrol):
        exe.chmod(0o755)
    script = write_slurm_script(
        "ATLAS",
        "2d_lcnn",
        ["all"],
        tmp_path / "s.sbatch",
        results_folder=str(tmp_path),
        command=str(fake),
    )
    (tmp_path / "ATLAS" / "2d_lcnn" / "fold_all").mkdir(parents=True)
    (tmp_path / "ATLAS" / "2d_lcnn" / "fold_all" / "checkpoint_latest.pt").touch()
    env = {
        "PATH": f"{tmp_path}:/usr/bin:/bin",
        "SLURM_ARRAY_TASK_ID": "0",
        "SLURM_ARRAY_JOB_ID": "7",
        "SLURM_JOB_ID": "8",
        "READY": str(tmp_path / "ready"),
    }
    process = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, text=True)
    for _ in range(100):
        if (tmp_path / "ready").exists():
            break
        subprocess.run(["sleep", "0.05"], check=True)
    process.send_signal(10)  # SIGUSR1, as SLURM sends it to the batch shell
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    assert "args: ATLAS 2d_lcnn all --continue" in output
    assert (tmp_path / "requeued").read_text().strip() == "requeue 7_0"
