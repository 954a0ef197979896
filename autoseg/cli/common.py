"""What every command shares: exit codes, the workspace flags, running a command.

The command-line layer is the only one that reads environment variables: it turns
``AUTOSEG_HOME``, ``AUTOSEG_RAW``, ``AUTOSEG_PREPROCESSED`` and ``AUTOSEG_RESULTS`` (or the
matching flags) into a :class:`~autoseg.core.workspace.Workspace`. Exit status: 0 success,
2 bad usage or invalid input (reasons on stderr), 1 internal failure.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence

from autoseg.core.errors import InvalidInputError
from autoseg.core.workspace import DEFAULT_HOME, Workspace

EXIT_OK, EXIT_FAILURE, EXIT_INVALID = 0, 1, 2


def workspace_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Workspace:
    """Flags win over environment variables, which win over ``$AUTOSEG_HOME/<root>``."""
    home = args.home or environ.get("AUTOSEG_HOME") or DEFAULT_HOME
    return Workspace.under(home).replace(
        raw=args.raw or environ.get("AUTOSEG_RAW"),
        preprocessed=args.preprocessed or environ.get("AUTOSEG_PREPROCESSED"),
        results=args.results or environ.get("AUTOSEG_RESULTS"),
    )


def add_workspace_flags(parser: argparse.ArgumentParser) -> None:
    """``--home``, ``--raw``, ``--preprocessed``, ``--results`` (see :func:`workspace_from`)."""
    group = parser.add_argument_group("workspace (default: $AUTOSEG_HOME or ./autoseg_data)")
    group.add_argument("--home", help="root holding raw/, preprocessed/, results/")
    group.add_argument("--raw", help="raw datasets root (or $AUTOSEG_RAW)")
    group.add_argument("--preprocessed", help="plans and caches root (or $AUTOSEG_PREPROCESSED)")
    group.add_argument("--results", help="training results root (or $AUTOSEG_RESULTS)")


def run(command: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command, mapping errors to exit codes with readable messages on stderr."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return command(args) or EXIT_OK
    except InvalidInputError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except PermissionError as error:  # the checks up front missed it (e.g. a changed mount)
        print(f"error: {error.filename}: {error.strerror}", file=sys.stderr)
        return EXIT_INVALID
    except Exception:
        traceback.print_exc()
        return EXIT_FAILURE


def parse_and_run(
    parser: argparse.ArgumentParser,
    command: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None,
) -> int:
    """Parse ``argv`` (None: the process's own), build the workspace, run the command."""
    args = parser.parse_args(argv)
    # The command as typed, for provenance records (library code never reads sys.argv).
    args.command_line = shlex.join([parser.prog, *(sys.argv[1:] if argv is None else argv)])
    if hasattr(args, "home"):
        args.workspace = workspace_from(args, os.environ)
    return run(command, args)


def fold_arg(text: str) -> int | str:
    """A fold argument: ``0``, ``1`` ... as a number, or ``all``."""
    if text == "all":
        return text
    if not text.isdigit():
        raise InvalidInputError(f"fold must be a number or 'all', not '{text}'")
    return int(text)


def format_number(value: float | None) -> str:
    """Four decimals, or ``n/a`` for a missing or NaN metric."""
    return "n/a" if value is None or value != value else f"{value:.4f}"
