"""Where autoseg keeps its files: one value, built by the CLI, passed everywhere else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = Path("autoseg_data")


@dataclass(frozen=True)
class Workspace:
    """The three roots: raw datasets, preprocessed caches and plans, training results."""

    raw: Path
    preprocessed: Path
    results: Path

    @classmethod
    def under(cls, home: str | Path = DEFAULT_HOME) -> Workspace:
        """The default layout: ``raw/``, ``preprocessed/``, ``results/`` below one root."""
        home = Path(home)
        return cls(raw=home / "raw", preprocessed=home / "preprocessed", results=home / "results")

    def replace(self, **roots: str | Path | None) -> Workspace:
        """A copy with some roots overridden (``None`` keeps the current one)."""
        merged = {
            name: Path(roots[name]) if roots.get(name) is not None else getattr(self, name)
            for name in ("raw", "preprocessed", "results")
        }
        return Workspace(**merged)
