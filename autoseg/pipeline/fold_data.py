"""What one fold trains on, and where its results go.

:func:`load_fold` reads the plans, the configuration's cache and the fold's cases
(writing ``splits.json`` once); :func:`prepare_results` makes the self-contained results
folder ``results/<NAME>/<CONFIG>/`` (plans.json and dataset.json copies, DESIGN §3).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from autoseg.core.atomic import read_json
from autoseg.core.errors import InvalidInputError
from autoseg.core.run_layout import DATASET_JSON, RunLayout, resolve_dataset_dir
from autoseg.core.workspace import Workspace
from autoseg.planning.feasibility import check_trainable
from autoseg.plans import Configuration, Plans, load_plans, write_plans
from autoseg.preprocessing.cache import SPEC_FILE, cached_case_ids
from autoseg.training.splits import MIN_FOLDS, NUM_FOLDS, cases_of_fold, load_or_create_splits


@dataclass(frozen=True)
class FoldData:
    """What one fold trains on: the plans, its configuration and the case split."""

    dataset: str
    plans: Plans
    configuration: str
    config: Configuration
    cache: Path
    train_ids: list[str]
    val_ids: list[str]


def training_case_ids(cache: Path) -> list[str]:
    """Case ids with a finished cache entry (the cache's own rule of "finished")."""
    if not cache.is_dir():
        raise InvalidInputError(f"{cache}: cache folder missing (run autoseg_plan to preprocess)")
    return cached_case_ids(cache)


def load_fold(workspace: Workspace, dataset: str, configuration: str, fold: int | str) -> FoldData:
    """Plans, configuration, cache folder and the fold's cases (writing splits.json once)."""
    layout = RunLayout(workspace, resolve_dataset_dir(workspace.preprocessed, dataset).name)
    plans = load_plans(layout.plans)
    config = plans.configuration(configuration)
    check_trainable(plans, configuration, layout.plans)
    cache = layout.cache(config.data_id)
    check_cache_matches(cache, config, configuration, layout.plans)
    case_ids = training_case_ids(cache)
    train_ids, val_ids = fold_cases(layout.splits, case_ids, fold, configuration)
    return FoldData(layout.dataset, plans, configuration, config, cache, train_ids, val_ids)


def check_cache_matches(cache: Path, config: Configuration, name: str, plans_path: Path) -> None:
    """Refuse a cache made with other preprocessing than the configuration states.

    ``autoseg_plan`` names a configuration's cache by its preprocessing (``data_id``), so a
    hand edit of ``preprocessing`` or ``normalization`` in plans.json leaves the old name
    pointing at data made the old way: a network would train on it, and on a channel count
    it no longer expects. Caches without a spec record (hand-made ones) are not checked.

    Raises:
        InvalidInputError: the cache's recorded spec differs, naming the keys.
    """
    record_path = cache / SPEC_FILE
    if not record_path.is_file():
        return
    spec = config.preprocessing_spec
    try:
        record = read_json(record_path)
    except ValueError as error:
        raise InvalidInputError(str(error)) from error
    if record.get("spec_hash") == spec.spec_hash:
        return
    stated, cached = spec.to_json(), dict(record.get("spec") or {})
    keys = sorted(k for k in set(stated) | set(cached) if stated.get(k) != cached.get(k))
    raise InvalidInputError(
        f"{plans_path}: configuration '{name}' names the cache {cache.name}, which was made "
        f"with other preprocessing ({', '.join(keys) or 'spec'} differ). Was plans.json "
        f"edited by hand? Make the change with autoseg_plan -d {plans_path.parent.name} "
        f"--set {name}.KEY=VALUE, which preprocesses a cache for it, or undo the edit"
    )


def fold_cases(
    splits_path: Path, case_ids: list[str], fold: int | str, configuration: str
) -> tuple[list[str], list[str]]:
    """Training and validation cases of ``fold``, writing splits.json once when missing.

    Fold ``all`` needs no splits (every cached case, no validation), so a dataset too small
    for cross-validation still trains; a numbered fold on one says to train ``all``.
    """
    if fold == "all" and not splits_path.is_file():
        return list(case_ids), []
    if not splits_path.is_file() and len(case_ids) < MIN_FOLDS:
        raise InvalidInputError(
            f"{splits_path}: {len(case_ids)} training case(s) cannot make cross-validation "
            f"folds (need >= {MIN_FOLDS}); train on every case instead: autoseg_train "
            f"{splits_path.parent.name} {configuration} all"
        )
    folds = min(NUM_FOLDS, len(case_ids))
    return cases_of_fold(load_or_create_splits(splits_path, case_ids, num_folds=folds), fold)


def result_folder(workspace: Workspace, data: FoldData, fold: int | str) -> Path:
    """``results/<NAME>/<CONFIG>/fold_<k>``."""
    return RunLayout(workspace, data.dataset).fold(data.configuration, fold).folder


def prepare_results(workspace: Workspace, data: FoldData, fold: int | str) -> Path:
    """``results/<NAME>/<CONFIG>/`` with copies of plans.json and dataset.json; returns
    the fold folder (DESIGN §3: a results folder is self-contained for inference)."""
    out = RunLayout(workspace, data.dataset).configuration(data.configuration)
    write_plans(out.plans, data.plans)
    for root in (workspace.preprocessed, workspace.raw):
        try:
            source = resolve_dataset_dir(root, data.dataset) / DATASET_JSON
        except InvalidInputError:
            continue
        if source.is_file():
            shutil.copyfile(source, out.dataset_json)
            break
    return out.fold(fold).folder
