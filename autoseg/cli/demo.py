"""``autoseg_demo`` (the whole job on synthetic data) and ``autoseg_benchmark`` (speed)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from autoseg.cli.args import (
    OneLineParser,
    add_augment_on_flag,
    add_lever_flags,
    dataset_name,
    levers_from,
    positive_int,
)
from autoseg.cli.common import (
    EXIT_OK,
    add_workspace_flags,
    fold_arg,
    parse_and_run,
)


def demo_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="autoseg_demo",
        description="The whole job on built-in synthetic ATLAS-like data: synth, convert, "
        "verify, plan, train the recommended configuration within the budget, predict "
        "held-out cases, evaluate, and write the HTML report. Re-running resumes.",
    )
    parser.add_argument("--minutes", type=float, default=15.0, help="budget of the whole demo")
    parser.add_argument("--cases", type=int, default=40, help="synthetic training cases")
    parser.add_argument("--holdout-cases", type=int, default=10, help="held-out test cases")
    parser.add_argument("--config", help="configuration to train (default: the planner's)")
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cuda, cpu")
    parser.add_argument(
        "--size",
        choices=("small", "full"),
        default="small",
        help="small: 2 mm (default); full: the 1 mm ATLAS grid",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic data")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_workspace_flags(parser)
    return parser


def _demo(args: argparse.Namespace) -> int:
    import time

    from autoseg.pipeline.demo import DemoOptions, format_summary, run_demo

    started = time.perf_counter()
    options = DemoOptions(
        home=args.workspace.raw.parent,
        minutes=args.minutes,
        cases=args.cases,
        holdout_cases=args.holdout_cases,
        configuration=args.config,
        device=args.device,
        size=args.size,
        seed=args.seed,
        progress=not args.no_progress,
    )
    summary = run_demo(options)
    print(format_summary(summary, time.perf_counter() - started))
    return EXIT_OK


def demo_main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(demo_parser(), _demo, argv)


def benchmark_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="autoseg_benchmark",
        description="Time one planned configuration on this device: s/iteration with the "
        "training loader and with one batch reused (the loader's share), peak memory against "
        "the plans' estimate, prediction s/case with and without TTA; a table on screen and "
        "JSON on disk.",
    )
    parser.add_argument(
        "-d", "--dataset", required=True, help="dataset name (or nnU-Net id)", type=dataset_name
    )
    parser.add_argument("-c", "--configuration", required=True, help="e.g. 3d_hybrid")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--fold", default="0", help="whose cases (and checkpoint) to use")
    parser.add_argument("--iterations", type=positive_int, default=10,
                        help="timed steps per measurement (default 10)")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed steps before them (default 2)")  # fmt: skip
    parser.add_argument("-nw", "--num-workers", type=int, help="loader processes (0: inline)")
    parser.add_argument("--prediction-cases", type=int, default=2,
                        help="cases predicted with and without TTA (0: none)")  # fmt: skip
    parser.add_argument("--sweep", nargs="*", metavar="LEVER",
                        help="one run per lever toggled from the levers given (all levers, "
                             "or the ones named, e.g. --sweep precision compile)")  # fmt: skip
    parser.add_argument(
        "--out", type=Path, help="JSON file (default results/NAME/CONFIG/benchmark_DEV.json)"
    )
    parser.add_argument("--seed", type=int, default=12345, help="initialisation and batches")
    add_augment_on_flag(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_lever_flags(parser)
    add_workspace_flags(parser)
    return parser


def _benchmark(args: argparse.Namespace) -> int:
    from autoseg.pipeline.benchmark import BenchmarkOptions, run_benchmark
    from autoseg.pipeline.benchmark_report import format_report

    options = BenchmarkOptions(
        device=args.device, fold=fold_arg(args.fold), iterations=args.iterations,
        warmup=args.warmup, num_workers=args.num_workers,
        prediction_cases=args.prediction_cases, levers=levers_from(args),
        sweep=args.sweep is not None, sweep_levers=tuple(args.sweep or ()),
        seed=args.seed, progress=not args.no_progress, augment_on=args.augment_on,
    )  # fmt: skip
    report, path = run_benchmark(args.workspace, args.dataset, args.configuration, options,
                                 args.out)  # fmt: skip
    print(format_report(report))
    print(f"wrote {path}")
    return EXIT_OK


def benchmark_main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(benchmark_parser(), _benchmark, argv)
