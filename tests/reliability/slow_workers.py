"""Run a CLI command whose work is slowed down, to SIGKILL it at a chosen moment.

``python -m tests.reliability.slow_workers MODULE:FUNCTION COMMAND ARGS...`` replaces the
pool task ``MODULE.FUNCTION`` with :func:`sleep_forever` and runs ``autoseg.cli.COMMAND``.
Forked workers inherit the replacement; spawned workers unpickle it from this module.
``--delay SECONDS`` first keeps the function but makes each call wait that long (for
in-process work: serial conversion, the predictor's reader thread).
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
    (Path(os.environ[MARKER_DIR]) / str(os.getpid())).touch()  # the test's marker folder
    time.sleep(600)


_ORIGINAL: list = []
_DELAY_SECONDS = [0.0]


def delayed(*args: object, **kwargs: object) -> object:
    """The original function, called after a pause (so a test can kill the run between)."""
    time.sleep(_DELAY_SECONDS[0])
    return _ORIGINAL[0](*args, **kwargs)


def main(argv: list[str]) -> int:
    replacement = sleep_forever
    if argv[0] == "--delay":
        _DELAY_SECONDS[0], replacement, argv = float(argv[1]), delayed, argv[2:]
    target, command, *rest = argv
    module_name, attribute = target.split(":")
    owner: object = importlib.import_module(module_name)
    *path, name = attribute.split(".")  # "Class.method" patches a method
    for part in path:
        owner = getattr(owner, part)
    _ORIGINAL.append(getattr(owner, name))
    setattr(owner, name, replacement)
    from autoseg import cli

    return getattr(cli, command)(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
