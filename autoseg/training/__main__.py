"""``python -m autoseg.training`` / ``torchrun -m autoseg.training``: the autoseg_train CLI."""

from autoseg.cli import train_main

raise SystemExit(train_main())
