"""Run a CLI command whose pool task never finishes, to kill its parent mid-pool.

``python -m tests.reliability.slow_workers MODULE:FUNCTION COMMAND ARGS...`` replaces the
pool task ``MODULE.FUNCTION`` with :func:`sleep_forever` and runs ``autoseg.cli.COMMAND``.
Forked workers inherit the replacement; spawned workers unpickle it from this module.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

MARKER_DIR = "AUTOSEG_TEST_MARKERS"


def sleep_forever(*_: object, **__: object) -> None:
    """A pool task that says it started (a file named by its pid) and then never ends."""
    (Path(os.environ[MARKER_DIR]) / str(os.getpid())).touch()
    time.sleep(600)


def main(argv: list[str]) -> int:
    target, command, *rest = argv
    module_name, function = target.split(":")
    setattr(importlib.import_module(module_name), function, sleep_forever)
    from autoseg import cli

    return getattr(cli, command)(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
