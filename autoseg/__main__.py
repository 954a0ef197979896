"""``python -m autoseg <command> ...`` (and ``torchrun -m autoseg train ...``)."""

from autoseg.cli.dispatch import main

raise SystemExit(main())
