"""``autoseg_plan``: verify, fingerprint, plan, split and preprocess a raw dataset.

Each step resumes: the fingerprint keeps finished cases, the splits file is written once
and kept (it may have been edited), and the caches skip cases whose spec is unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from autoseg.core.errors import InvalidInputError
from autoseg.core.paths import ensure_writable_dir
from autoseg.core.run_layout import SPLITS_JSON, RunLayout, resolve_dataset_dir
from autoseg.core.workspace import Workspace
from autoseg.data.layout import RawDataset
from autoseg.data.verify import require_valid
from autoseg.planning.planner import plan_dataset
from autoseg.plans import Plans
from autoseg.preprocessing import preprocess_dataset
from autoseg.training.splits import NUM_FOLDS, load_or_create_splits

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanOptions:
    """What ``autoseg_plan`` was asked to do (flags that change results go to the plans)."""

    gpu_memory_gb: float | None = None
    device: str | None = None
    overrides: tuple[str, ...] = ()
    plan_only: bool = False
    configurations: tuple[str, ...] = ()
    num_processes: int | None = None
    overwrite: bool = False
    progress: bool = True


@dataclass(frozen=True)
class PlanResult:
    """Where the step wrote its outputs."""

    plans: Plans
    plans_path: Path
    splits_path: Path
    cache_folders: dict[str, Path] = field(default_factory=dict)


def selected_configurations(plans: Plans, wanted: tuple[str, ...]) -> list[str]:
    """The configurations to preprocess: the ones asked for, or all of them."""
    known = sorted(plans.configurations)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise InvalidInputError(f"unknown configuration(s) {unknown}; known: {', '.join(known)}")
    return list(wanted) or known


def write_splits(raw: RawDataset, preprocessed: Path) -> Path:
    """Write ``splits.json`` once: 5 folds by subject (fewer when there are fewer cases)."""
    case_ids = [case.case_id for case in raw.training_cases()]
    folds = min(NUM_FOLDS, len(case_ids))
    path = preprocessed / raw.name / SPLITS_JSON
    if folds < 2:
        LOG.warning(
            "%d training case: too few for cross-validation, so no %s; train on every case "
            "with fold 'all' (autoseg_train %s CONFIG all)", len(case_ids), path, raw.name,
        )  # fmt: skip
        return path
    if folds < NUM_FOLDS:
        LOG.warning("only %d training cases: %d-fold cross-validation", len(case_ids), folds)
    load_or_create_splits(path, case_ids, num_folds=folds)
    return path


def preprocess_configurations(
    raw: RawDataset, preprocessed: Path, plans: Plans, names: list[str], options: PlanOptions
) -> dict[str, Path]:
    """Build each distinct cache once: configurations at one spacing share it."""
    folders: dict[str, Path] = {}
    for name in names:
        spec = plans.configuration(name).preprocessing_spec
        if spec.data_id not in folders:
            LOG.info("preprocessing %s -> %s", name, spec.data_id)
            preprocess_dataset(
                raw,
                preprocessed / raw.name,
                spec,
                num_processes=options.num_processes or 2,
                progress=options.progress,
                overwrite=options.overwrite,
            )
            folders[spec.data_id] = preprocessed / raw.name / spec.data_id
    return folders


def run_plan(workspace: Workspace, dataset: str, options: PlanOptions) -> PlanResult:
    """The whole ``autoseg_plan`` step for one dataset.

    Raises:
        InvalidInputError: the dataset fails verification (every problem listed) or an
            option names an unknown configuration or plans key.
    """
    root = resolve_dataset_dir(workspace.raw, dataset)
    ensure_writable_dir(workspace.preprocessed / root.name, "preprocessed folder")
    require_valid(root, num_processes=options.num_processes, progress=options.progress)
    raw = RawDataset.open(root)
    plans = plan_dataset(
        workspace,
        raw.name,
        gpu_memory_gb=options.gpu_memory_gb,
        device=options.device,
        overrides=list(options.overrides),
        num_processes=options.num_processes,
        progress=options.progress,
    )
    names = selected_configurations(plans, options.configurations)
    splits_path = write_splits(raw, workspace.preprocessed)
    folders = {}
    if not options.plan_only:
        folders = preprocess_configurations(raw, workspace.preprocessed, plans, names, options)
    plans_path = RunLayout(workspace, raw.name).plans
    return PlanResult(plans, plans_path, splits_path, folders)
