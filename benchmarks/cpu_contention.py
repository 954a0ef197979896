"""Slowdown of CPU prediction and training beside a second CPU-heavy process (issue 16,
part 5: target <= 2.5x on 2 cores, where a fair share alone would give 2x).

    python benchmarks/cpu_contention.py --work-dir /tmp/cpu_contention       # 2 mm, 2 cases
    python benchmarks/cpu_contention.py --size tiny --cases 1 --steps 1 --threads 0 1  # dry run

One synthetic ATLAS-like set (``--background``, zero-mean noise by default) is planned
(``3d_hybrid``) and preprocessed; a network is trained ``--iterations`` steps. Timed alone
and then beside a competitor (a subprocess multiplying 512x512 float32 matrices with torch
on every core, like a second training job): per-case prediction through the user's path
(read, preprocess, sliding window, revert, write; median over cases and repeats) and
``--steps`` training steps on batches drawn in advance (median). Slowdown = beside / alone.

Modes as in ``cpu_predict_cost.py``: ``before`` puts back the old code in this process
(torch's own thread count, the flush in the calling thread only, the first crop rule only),
``after`` is this tree; ``blind`` is this tree with the neighbour probe read as zero (the
thread count capped by the quota only, as before prediction yielded cores to busy
neighbours). ``--threads`` adds rows with torch's intra-op threads set by hand (0: what the
mode chooses), to show what oversubscription costs. Training steps do not probe: the
``train`` columns show what a neighbour costs a training job.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import torch
from cpu_predict_cost import (
    CONFIGURATION,
    behaviour,
    make_set,
    plan_and_preprocess,
    time_case,
    train_snapshots,
)

from autoseg.core.cpu import flushed_denormals
from autoseg.core.resources import available_cores
from autoseg.inference import case_prediction as predict_module
from autoseg.inference.settings import InferenceSettings
from autoseg.pipeline.fold_data import load_fold
from autoseg.pipeline.fold_trainer import TrainOptions, build_trainer

COMPETITOR = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
a = torch.randn(512, 512)
b = a @ a
print("ready", flush=True)
while True:
    b = a @ a
"""


MODES = ("before", "blind", "after")


@contextlib.contextmanager
def mode_behaviour(mode: str) -> Iterator[None]:
    """``blind``: this tree, but prediction sees no busy neighbour; else as cpu_predict_cost."""
    if mode != "blind":
        with behaviour(mode):
            yield
        return
    saved = predict_module._NEIGHBOURS
    predict_module._NEIGHBOURS = SimpleNamespace(cores=lambda: 0.0)
    try:
        yield
    finally:
        predict_module._NEIGHBOURS = saved


def start_competitor(threads: int) -> subprocess.Popen:
    """The CPU-heavy neighbour, started and warmed up (returns once it computes)."""
    process = subprocess.Popen([sys.executable, "-c", COMPETITOR, str(threads)],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    if process.stdout is None or process.stdout.readline().strip() != "ready":
        process.kill()
        raise RuntimeError("the competitor process did not start")
    time.sleep(1.0)  # its thread pool is up and busy
    return process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)


def training_batches(workspace: object, steps: int, work: Path) -> tuple[object, list]:
    """A trainer of the set and ``steps + 1`` batches drawn in advance (one for warm-up)."""
    data = load_fold(workspace, "Cost", CONFIGURATION, "all")
    options = TrainOptions(epochs=1, iterations_per_epoch=steps + 1, device="cpu",
                           num_workers=0, progress=False)  # fmt: skip
    trainer = build_trainer(workspace, data, "all", work / "contention_train", options)
    batches = list(itertools.islice(trainer.batches.for_epoch(0, 0), steps + 1))
    trainer.batches.close()
    return trainer, batches


def step_seconds(trainer: object, batches: list) -> float:
    """Median seconds of a training step (the first batch warms up)."""
    times = []
    with flushed_denormals("cpu"):
        for index, batch in enumerate(batches):
            start = time.perf_counter()
            trainer.train_step(batch)
            if index:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(setup: dict, mode: str, threads: int, repeats: int) -> dict[str, float]:
    """Median prediction s/case and training s/step under one mode and thread count."""
    default = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        with mode_behaviour(mode):
            cases = [time_case(case, setup["network"], setup["spec"], setup["settings"],
                               setup["out"]).total_s
                     for _ in range(repeats) for case in setup["cases"]]  # fmt: skip
            step = step_seconds(setup["trainer"], setup["batches"])
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(default)
    return {"predict": statistics.median(cases), "step": step, "threads": used}


HEADER = (
    "\n| mode | threads alone/beside | predict s/case alone | beside | slowdown "
    "| train s/step alone | beside | slowdown |\n|---|---|---|---|---|---|---|---|"
)


def table_row(mode: str, alone: dict[str, float], beside: dict[str, float]) -> str:
    """One markdown row: thread counts, then prediction and training alone/beside/ratio."""
    cells = [mode, f"{alone['threads']:.0f}/{beside['threads']:.0f}"]
    for key, digits in (("predict", 2), ("step", 3)):
        ratio = beside[key] / alone[key]
        cells += [f"{alone[key]:.{digits}f}", f"{beside[key]:.{digits}f}", f"{ratio:.2f}"]
    return "| " + " | ".join(cells) + " |"


def run(args: argparse.Namespace, work: Path) -> None:
    cores = available_cores()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cores} cores; "
        f"competitor: torch matmul on {args.competitor_threads or cores} threads"
    )
    workspace, case_set = make_set(work, args.background, args.cases, args.size)
    entry = plan_and_preprocess(workspace)
    network = train_snapshots(workspace, [args.iterations], work)[f"{args.iterations} it"]
    trainer, batches = training_batches(workspace, args.steps, work)
    (work / "out").mkdir(parents=True, exist_ok=True)
    setup = {"network": network, "spec": entry.preprocessing_spec, "cases": case_set.cases,
             "settings": InferenceSettings.from_configuration(
                 entry, int(entry.network.kwargs["num_classes"]), device="cpu",
                 tta=args.tta),
             "trainer": trainer, "batches": batches, "out": work / "out"}  # fmt: skip
    print(HEADER)
    for mode in args.modes:
        for threads in args.threads:
            alone = measure(setup, mode, threads, args.repeats)
            competitor = start_competitor(args.competitor_threads or cores)
            try:
                beside = measure(setup, mode, threads, args.repeats)
            finally:
                stop(competitor)
            print(table_row(mode, alone, beside), flush=True)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="passes over the cases")
    parser.add_argument("--size", default="small", help="small: 2 mm; tiny: 4 mm (dry run)")
    parser.add_argument("--background", default="gaussian")
    parser.add_argument("--iterations", type=int, default=2, help="training of the network")
    parser.add_argument("--steps", type=int, default=5, help="training steps timed")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--threads", type=int, nargs="+", default=[0],
                        help="torch intra-op threads per row (0: the mode's choice)")  # fmt: skip
    parser.add_argument("--competitor-threads", type=int, default=0, help="0: every core")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--work-dir", type=Path, help="keep data between runs")
    return parser.parse_args()


def main() -> None:
    args = parse()
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        run(args, args.work_dir)
        return
    with tempfile.TemporaryDirectory(prefix="autoseg-cpu-contention-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
