"""``autoseg_slurm``: an sbatch array script training one fold per array task.

The script asks SLURM for a warning signal (``--signal=B:USR1@120``: SIGUSR1 to the batch
shell two minutes before the time limit), forwards it to the training process, which
saves ``checkpoint_latest.pt`` after its current step and exits with
EXIT_INTERRUPTED; the script then requeues the job (``--requeue``), and the requeued task
finds the checkpoint and resumes with ``--continue``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from autoseg.core.atomic import atomic_path
from autoseg.core.errors import InvalidInputError
from autoseg.core.paths import ensure_writable_file
from autoseg.core.run_layout import FOLD_PREFIX, checkpoint_name
from autoseg.training.trainer import EXIT_INTERRUPTED

TEMPLATE = """#!/bin/bash
#SBATCH --job-name={job_name}
#SBATCH --array=0-{last_task}
#SBATCH --gres=gpu:{gpus}
#SBATCH --cpus-per-task={cpus}
#SBATCH --mem={mem}
#SBATCH --time={time}
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
#SBATCH --output={log_dir}/%x_%A_%a.out
{partition_line}
# One fold per array task; SIGUSR1 before the time limit checkpoints and requeues.
FOLDS=({folds})
FOLD=${{FOLDS[$SLURM_ARRAY_TASK_ID]}}
FOLD_DIR={results}/{dataset}/{configuration}/{fold_prefix}${{FOLD}}

RESUME=""
if [ -f "$FOLD_DIR/{latest}" ]; then
    RESUME="--continue"
fi

forward_signal() {{
    echo "autoseg_slurm: SIGUSR1 received, asking training to checkpoint"
    kill -USR1 "$TRAIN_PID" 2>/dev/null
}}
trap forward_signal USR1

{command} {dataset_q} {configuration_q} "$FOLD" $RESUME{extra} &
TRAIN_PID=$!
wait "$TRAIN_PID"
STATUS=$?
# `wait` returns early (status > 128) when the trap ran; wait for the checkpoint.
while kill -0 "$TRAIN_PID" 2>/dev/null; do
    wait "$TRAIN_PID"
    STATUS=$?
done
if [ "$STATUS" -eq {interrupted} ]; then
    echo "autoseg_slurm: checkpointed, requeueing job $SLURM_JOB_ID"
    scontrol requeue "${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
    exit 0
fi
exit "$STATUS"
"""


def write_slurm_script(
    dataset: str,
    configuration: str,
    folds: Sequence[int | str],
    output_path: Path,
    partition: str | None = None,
    gpus: int = 1,
    cpus: int = 8,
    mem: str = "64G",
    time: str = "24:00:00",
    extra_args: Sequence[str] = (),
    results_folder: str = "$AUTOSEG_HOME/results",
    command: str = "autoseg_train",
) -> Path:
    """Write the sbatch array script (atomically) and return its path.

    Args:
        dataset: dataset name.
        configuration: configuration to train.
        folds: one array task per entry (``0 1 2 3 4`` or ``all``).
        output_path: where the script goes.
        partition: ``#SBATCH --partition`` (None: the cluster default).
        gpus: GPUs per task (more than one runs DDP via ``--num-gpus``).
        cpus: CPU cores per task (data loading workers).
        mem: memory per task, SLURM syntax.
        time: time limit per task, SLURM syntax (the requeue continues past it).
        extra_args: further ``autoseg_train`` flags.
        results_folder: results root as the job sees it (shell expressions allowed).
        command: the training command.
    """
    if not folds:
        raise InvalidInputError("autoseg_slurm: give at least one fold (--folds 0 1 2 3 4)")
    output_path = ensure_writable_file(output_path, "sbatch script")
    extra = list(extra_args) + (["--num-gpus", str(gpus)] if gpus > 1 else [])
    text = TEMPLATE.format(
        job_name=shlex.quote(f"{dataset}_{configuration}"),
        last_task=len(folds) - 1,
        gpus=gpus, cpus=cpus, mem=mem, time=time,
        log_dir=shlex.quote(str(output_path.parent.resolve())),
        partition_line=f"#SBATCH --partition={partition}\n" if partition else "",
        folds=" ".join(shlex.quote(str(f)) for f in folds),
        results=results_folder, dataset=shlex.quote(dataset),
        configuration=shlex.quote(configuration), command=command,
        dataset_q=shlex.quote(dataset), configuration_q=shlex.quote(configuration),
        extra="".join(" " + shlex.quote(a) for a in extra), interrupted=EXIT_INTERRUPTED,
        fold_prefix=FOLD_PREFIX, latest=checkpoint_name("latest"),
    )  # fmt: skip
    with atomic_path(output_path) as temp:
        temp.write_text(text)
        temp.chmod(0o755)
    return output_path
