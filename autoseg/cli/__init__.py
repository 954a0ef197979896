"""Command-line front doors: each parses its flags and calls one library function.

One module per command group (:mod:`~autoseg.cli.data`, :mod:`~autoseg.cli.plan`,
:mod:`~autoseg.cli.train`, :mod:`~autoseg.cli.predict`, :mod:`~autoseg.cli.evaluate`,
:mod:`~autoseg.cli.report`, :mod:`~autoseg.cli.demo`); every command is both a console
script (``autoseg_train ...``) and ``python -m autoseg train ...`` (:data:`COMMANDS`, the
torchrun target). Nothing else in the package imports this layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from autoseg.cli.common import EXIT_FAILURE, EXIT_INVALID, EXIT_OK, run, workspace_from
from autoseg.cli.data import (
    convert_main,
    convert_parser,
    synth_main,
    synth_parser,
    verify_main,
    verify_parser,
)
from autoseg.cli.demo import benchmark_main, benchmark_parser, demo_main, demo_parser
from autoseg.cli.evaluate import evaluate_main, evaluate_parser, find_best_main, find_best_parser
from autoseg.cli.plan import plan_main, plan_parser
from autoseg.cli.predict import (
    ensemble_main,
    ensemble_parser,
    export_main,
    export_parser,
    predict_main,
    predict_parser,
)
from autoseg.cli.report import report_main, report_parser, visualize_main, visualize_parser
from autoseg.cli.train import slurm_main, slurm_parser, split_passthrough, train_main, train_parser

# ``python -m autoseg <command>`` and the ``autoseg_<command>`` console scripts.
COMMANDS: dict[str, Callable[[Sequence[str] | None], int]] = {
    "demo": demo_main,
    "synth": synth_main,
    "convert": convert_main,
    "verify": verify_main,
    "plan": plan_main,
    "train": train_main,
    "slurm": slurm_main,
    "predict": predict_main,
    "export": export_main,
    "find_best": find_best_main,
    "ensemble": ensemble_main,
    "evaluate": evaluate_main,
    "report": report_main,
    "visualize": visualize_main,
    "benchmark": benchmark_main,
}

__all__ = [
    "COMMANDS", "EXIT_FAILURE", "EXIT_INVALID", "EXIT_OK", "benchmark_main", "benchmark_parser",
    "convert_main", "convert_parser", "demo_main", "demo_parser", "ensemble_main",
    "ensemble_parser", "evaluate_main", "evaluate_parser", "export_main", "export_parser",
    "find_best_main", "find_best_parser", "plan_main", "plan_parser", "predict_main",
    "predict_parser", "report_main", "report_parser", "run", "slurm_main", "slurm_parser",
    "split_passthrough", "synth_main", "synth_parser", "train_main", "train_parser",
    "verify_main", "verify_parser", "visualize_main", "visualize_parser", "workspace_from",
]  # fmt: skip
