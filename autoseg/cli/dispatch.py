"""``python -m autoseg <command> [flags]``: the console scripts behind one entry point.

It is what ``torchrun -m autoseg train ...`` and ``autoseg_train --num-gpus N`` start in
every DDP process, so no package below the command line needs an entry of its own.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from autoseg.cli import COMMANDS
from autoseg.cli.common import EXIT_INVALID, EXIT_OK


def usage() -> str:
    """The commands, one per line (``python -m autoseg --help``)."""
    names = "\n".join(f"  {name}" for name in COMMANDS)
    return (
        "usage: python -m autoseg COMMAND [flags]  (the same as autoseg_COMMAND [flags])\n"
        f"commands:\n{names}\n"
        "python -m autoseg COMMAND --help shows a command's flags"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``autoseg_<command>`` with the remaining arguments; exit 2 on an unknown command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return EXIT_OK if argv else EXIT_INVALID
    name = argv[0].removeprefix("autoseg_")
    if name not in COMMANDS:
        print(f"python -m autoseg: unknown command '{argv[0]}'\n{usage()}", file=sys.stderr)
        return EXIT_INVALID
    return COMMANDS[name](argv[1:])
