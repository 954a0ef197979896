"""Register an existing nnU-Net v2 raw dataset: a symlink (default) or a per-file copy.

The dataset is used as it is (any ``file_ending`` autoseg reads: ``.nii.gz``, ``.nii``,
``.mha``, ``.nrrd``). A copy is resumable like every conversion: each file is copied to
a temporary sibling and renamed, files that exist are skipped, and dataset.json (with a
``source`` note added) is written last.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from tqdm import tqdm

from autoseg.core.atomic import TEMP_PREFIX, atomic_path, is_temporary, read_json, write_json
from autoseg.core.errors import InvalidInputError
from autoseg.core.run_layout import DATASET_JSON
from autoseg.data.convert.cases import ConversionSummary
from autoseg.data.layout import RawDataset
from autoseg.data.records import Case


def _case_files(case: Case) -> list[Path]:
    return [*case.image_files, *([case.label_file] if case.label_file else [])]


def _check_source(dataset: RawDataset) -> None:
    """Refuse datasets without training cases or with label files missing."""
    cases = dataset.training_cases()
    if not cases:
        raise InvalidInputError(f"{dataset.images_tr}: no training cases")
    missing = [f"{path}: missing" for c in cases for path in _case_files(c) if not path.is_file()]
    if missing:
        raise InvalidInputError(missing)


def link(src: Path, dataset_dir: Path, overwrite: bool = False) -> bool:
    """Make ``dataset_dir`` a symlink to ``src``; False when it already was one.

    Raises:
        InvalidInputError: ``dataset_dir`` is a real folder, or links elsewhere without
            ``overwrite``.
    """
    target = src.resolve()
    if dataset_dir.is_symlink():
        if dataset_dir.resolve() == target:
            return False
        if not overwrite:
            raise InvalidInputError(
                f"{dataset_dir}: already links to {dataset_dir.resolve()} (use --overwrite)"
            )
    elif dataset_dir.exists():
        if dataset_dir.resolve() == target:
            return False
        raise InvalidInputError(f"{dataset_dir}: exists as a folder; remove it or pick a name")
    dataset_dir.parent.mkdir(parents=True, exist_ok=True)
    temp = dataset_dir.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{dataset_dir.name}")
    os.symlink(target, temp, target_is_directory=True)
    os.replace(temp, dataset_dir)
    return True


def _copy_file(source: Path, dest: Path) -> None:
    with atomic_path(dest) as temp:
        shutil.copyfile(source, temp)


def _extra_files(src: Path, cases: list[Case]) -> list[Path]:
    """Files of the dataset that belong to no case (e.g. splits, notes), but dataset.json."""
    case_files = {path for case in cases for path in _case_files(case)}
    return [
        path
        for path in sorted(src.rglob("*"))
        if path.is_file()
        and path not in case_files
        and path.name != DATASET_JSON
        and not is_temporary(path)
    ]


def copy(src: Path, dataset_dir: Path, overwrite: bool, progress: bool) -> tuple[int, int]:
    """Copy the dataset file by file; returns ``(cases copied, cases already there)``."""
    if dataset_dir.is_symlink():
        raise InvalidInputError(f"{dataset_dir}: is a link; remove it before copying")
    dataset = RawDataset.open(src)
    cases = dataset.training_cases() + dataset.test_cases()
    copied = 0
    for case in tqdm(cases, desc="copy", unit="case", disable=not progress):
        pairs = [(path, _dest(path, src, dataset_dir)) for path in _case_files(case)]
        todo = [(path, dest) for path, dest in pairs if overwrite or not dest.exists()]
        for path, dest in todo:
            _copy_file(path, dest)
        copied += bool(todo)
    for path in _extra_files(src, cases):
        if overwrite or not _dest(path, src, dataset_dir).exists():
            _copy_file(path, _dest(path, src, dataset_dir))
    payload = read_json(src / DATASET_JSON)
    payload.setdefault("source", {"kind": "nnunet", "path": str(src.resolve())})
    write_json(dataset_dir / DATASET_JSON, payload)
    return copied, len(cases) - copied


def _dest(path: Path, src: Path, dataset_dir: Path) -> Path:
    return dataset_dir / path.relative_to(src)


def register(
    src: Path,
    dataset_dir: Path,
    copy_files: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> ConversionSummary:
    """Link (default) or copy the nnU-Net raw dataset ``src`` to ``dataset_dir``.

    Raises:
        InvalidInputError: ``src`` has no valid dataset.json, no training cases or
            missing label files; the destination is in the way.
    """
    src = Path(src)
    dataset = RawDataset.open(src)
    _check_source(dataset)
    training, test = len(dataset.training_cases()), len(dataset.test_cases())
    if copy_files:
        converted, skipped = copy(src, Path(dataset_dir), overwrite, progress)
        return ConversionSummary("nnunet", Path(dataset_dir), training, test, converted, skipped)
    made = link(src, Path(dataset_dir), overwrite)
    total = training + test
    converted, skipped = (total, 0) if made else (0, total)
    return ConversionSummary(
        "nnunet", Path(dataset_dir), training, test, converted, skipped, linked=True
    )
