"""Where every artefact of a dataset lives: each file name is spelled here, once.

::

    preprocessed/<NAME>/  dataset.json  fingerprint.json  plans.json  splits.json  <data_id>/
    results/<NAME>/       inference.json  find_best.json  report.html  mlruns.db
      ensembles/<a>+<b>/fold_<k>/   find_best's ensembled validation folds
      test/               predictions/  metrics.json   (held-out cases: demo, report)
      <CONFIG>/           plans.json  dataset.json  (copies: the folder is self-contained)
                          benchmark_<device>.json  (autoseg_benchmark)
        fold_<k>/         checkpoint_{final,best,latest}.pt  training_log.csv  progress.png
          validation/     summary.json  <case>.npz ...

A module that reads or writes one of these files asks :class:`RunLayout`,
:class:`ConfigLayout` or :class:`FoldLayout` for its path instead of joining names itself,
so renaming a file is one edit and a reader never looks where no writer wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from autoseg.core.errors import InvalidInputError
from autoseg.core.paths import check_dataset_name
from autoseg.core.workspace import Workspace

PLANS_JSON = "plans.json"
DATASET_JSON = "dataset.json"
SPLITS_JSON = "splits.json"
FINGERPRINT_JSON = "fingerprint.json"
INFERENCE_JSON = "inference.json"
FIND_BEST_JSON = "find_best.json"
ENSEMBLES_FOLDER = "ensembles"
REPORT_HTML = "report.html"
MLRUNS_DB = "mlruns.db"
TRAINING_LOG_CSV = "training_log.csv"
PROGRESS_PNG = "progress.png"
VALIDATION_FOLDER = "validation"
SUMMARY_JSON = "summary.json"
FOLD_PREFIX = "fold_"
TEST_FOLDER = "test"  # held-out predictions and their metrics (the demo, the report)
CHECKPOINTS = ("final", "best", "latest")

NNUNET_FOLDER = re.compile(r"^Dataset(\d{3})_(.+)$")


def checkpoint_name(kind: str) -> str:
    """``checkpoint_<kind>.pt`` for ``final``, ``best`` or ``latest``."""
    return f"checkpoint_{kind}.pt"


def fold_folder_name(fold: int | str) -> str:
    """``fold_<k>`` (``fold_all`` for the fold trained on every case)."""
    return f"{FOLD_PREFIX}{fold}"


def resolve_dataset_dir(raw_root: Path, name: str) -> Path:
    """Find a dataset folder by name: ``ATLAS``, or ``Foo`` / ``12`` / ``Dataset012_Foo``.

    The one resolver of dataset names: every root (raw, preprocessed, results) holds one
    folder per dataset under the same name, so the same rule finds it in each.

    Raises:
        InvalidInputError: a name that is not one folder name (``""`` would be the root
            itself), no match (listing the datasets that exist) or several matches.
    """
    check_dataset_name(name)
    raw_root = Path(raw_root)
    if (raw_root / name).is_dir():
        return raw_root / name
    folders = sorted(p for p in raw_root.iterdir() if p.is_dir()) if raw_root.is_dir() else []
    matches = [p for p in folders if _nnunet_folder_matches(p.name, name)]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(p.name for p in folders) or "none"
    if not matches:
        raise InvalidInputError(f"{raw_root}: no dataset '{name}' (found: {known})")
    raise InvalidInputError(f"{raw_root}: '{name}' is ambiguous ({', '.join(map(str, matches))})")


def _nnunet_folder_matches(folder: str, name: str) -> bool:
    match = NNUNET_FOLDER.match(folder)
    if not match:
        return False
    number, short_name = match.groups()
    return name == short_name or (name.isdigit() and int(name) == int(number))


@dataclass(frozen=True)
class FoldLayout:
    """``results/<NAME>/<CONFIG>/fold_<k>/``: one fold's checkpoints, logs and validation."""

    folder: Path

    @property
    def fold(self) -> str:
        """The fold id (``"0"`` .. or ``"all"``)."""
        return self.folder.name[len(FOLD_PREFIX) :]

    def checkpoint(self, kind: str = "final") -> Path:
        return self.folder / checkpoint_name(kind)

    @property
    def training_log(self) -> Path:
        return self.folder / TRAINING_LOG_CSV

    @property
    def progress_plot(self) -> Path:
        return self.folder / PROGRESS_PNG

    @property
    def validation(self) -> Path:
        """The fold's validation predictions (with probabilities) and their summary."""
        return self.folder / VALIDATION_FOLDER

    @property
    def validation_summary(self) -> Path:
        return self.validation / SUMMARY_JSON


@dataclass(frozen=True)
class ConfigLayout:
    """``results/<NAME>/<CONFIG>/``: a trained configuration, self-contained for inference."""

    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def plans(self) -> Path:
        return self.folder / PLANS_JSON

    @property
    def dataset_json(self) -> Path:
        return self.folder / DATASET_JSON

    def fold(self, fold: int | str) -> FoldLayout:
        return FoldLayout(self.folder / fold_folder_name(fold))

    def benchmark(self, device_type: str) -> Path:
        """``autoseg_benchmark``'s report for one device type (``cpu``, ``cuda``, ``mps``)."""
        return self.folder / f"benchmark_{device_type}.json"

    def folds(self) -> dict[str, FoldLayout]:
        """``{fold id: layout}`` of the existing ``fold_<k>`` folders, numbers first."""
        found = {
            p.name[len(FOLD_PREFIX) :]: FoldLayout(p)
            for p in self.folder.glob(f"{FOLD_PREFIX}*")
            if p.is_dir() and (p.name[5:].isdigit() or p.name[5:] == "all")
        }
        order = sorted(found, key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0))
        return {fold: found[fold] for fold in order}

    def trained_folds(self, checkpoint: str = "final") -> list[str]:
        """Fold ids whose folder holds ``checkpoint_<checkpoint>.pt``."""
        return [f for f, fold in self.folds().items() if fold.checkpoint(checkpoint).is_file()]


def configurations_in(results: Path) -> list[str]:
    """Configuration folders of ``results/<NAME>``: those holding a plans.json copy."""
    if not Path(results).is_dir():
        return []
    return sorted(
        p.name for p in Path(results).iterdir() if p.is_dir() and ConfigLayout(p).plans.is_file()
    )


@dataclass(frozen=True)
class RunLayout:
    """Every artefact path of one dataset in a workspace.

    Attributes:
        workspace: the raw / preprocessed / results roots.
        dataset: the dataset's folder name below each root (``ATLAS``, ``Dataset012_Foo``).
    """

    workspace: Workspace
    dataset: str

    @classmethod
    def of_results(cls, workspace: Workspace, dataset: str) -> RunLayout:
        """The layout of a trained dataset: ``results/<NAME>`` found as given, or from
        ``Dataset012_NAME`` / ``12`` via the preprocessed, raw or results folder names.

        Raises:
            InvalidInputError: no results folder for the dataset (train it first).
        """
        direct = Path(workspace.results) / dataset
        if direct.is_dir():
            return cls(workspace, dataset)
        for root in (workspace.preprocessed, workspace.raw, workspace.results):
            try:
                folder = resolve_dataset_dir(Path(root), dataset)
            except InvalidInputError:
                continue
            if (Path(workspace.results) / folder.name).is_dir():
                return cls(workspace, folder.name)
        raise InvalidInputError(f"{direct}: no results for dataset '{dataset}' (train it first)")

    @property
    def raw(self) -> Path:
        return Path(self.workspace.raw) / self.dataset

    @property
    def preprocessed(self) -> Path:
        return Path(self.workspace.preprocessed) / self.dataset

    @property
    def plans(self) -> Path:
        return self.preprocessed / PLANS_JSON

    @property
    def splits(self) -> Path:
        return self.preprocessed / SPLITS_JSON

    @property
    def fingerprint(self) -> Path:
        return self.preprocessed / FINGERPRINT_JSON

    def cache(self, data_id: str) -> Path:
        """The preprocessed cache of one data id (``preprocessed/<NAME>/<data_id>``)."""
        return self.preprocessed / data_id

    @property
    def results(self) -> Path:
        return Path(self.workspace.results) / self.dataset

    @property
    def find_best_json(self) -> Path:
        return self.results / FIND_BEST_JSON

    @property
    def report(self) -> Path:
        return self.results / REPORT_HTML

    @property
    def test_predictions(self) -> Path:
        return self.results / TEST_FOLDER / "predictions"

    @property
    def test_metrics(self) -> Path:
        return self.results / TEST_FOLDER / "metrics.json"

    def configuration(self, name: str) -> ConfigLayout:
        return ConfigLayout(self.results / name)

    def fold(self, configuration: str, fold: int | str) -> FoldLayout:
        return self.configuration(configuration).fold(fold)
