"""Argument types and the parser class of the command-line layer (:mod:`autoseg.cli`).

Bad usage is one line and exit status 2, never a traceback: an out-of-range number or a
dataset name that is not one folder name is refused while the flags are parsed.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from autoseg.data.paths import dataset_name_problem

EXIT_INVALID = 2


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the full usage is ``--help``'s job)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """An integer >= 1 (``--epochs 0`` would silently mean the plans' value)."""
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got '{text}'") from error
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def dataset_name(text: str) -> str:
    """One folder name below the roots (``""`` and ``../x`` would write beside or outside)."""
    problem = dataset_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text
