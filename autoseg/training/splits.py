"""Cross-validation splits: 5 folds by case, seeded, grouped so one subject stays in one fold.

``splits.json`` is a list of ``{"train": [...], "val": [...]}``, one entry per fold (the
nnU-Net format), so users can edit it or bring their own.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from autoseg.core.atomic import read_json, write_json
from autoseg.core.errors import InvalidInputError

NUM_FOLDS = 5  # cross-validation folds when there are enough cases
MIN_FOLDS = 2  # fewer cases cannot make a validation split
SESSION_SUFFIX = re.compile(r"[_-](ses|session|tp|visit|scan)-?[A-Za-z0-9]+$", re.IGNORECASE)


def subject_of(case_id: str) -> str:
    """The subject a case belongs to: its id without a trailing session/visit entity.

    ``sub-01_ses-2`` and ``sub-01_ses-3`` are one subject: putting them in different folds
    would leak the subject's anatomy from training into validation.
    """
    return SESSION_SUFFIX.sub("", case_id)


def make_splits(case_ids: list[str], num_folds: int = 5, seed: int = 12345) -> list[dict]:
    """Split cases into folds by subject; each fold's ``val`` is one group of subjects.

    Subjects are shuffled with ``seed`` and dealt to the fold that has the fewest cases so
    far, so fold sizes differ by at most the largest subject's case count.
    """
    if len(case_ids) < num_folds:
        raise InvalidInputError(
            f"{len(case_ids)} training cases cannot make {num_folds} folds (need >= {num_folds})"
        )
    groups: dict[str, list[str]] = defaultdict(list)
    for case_id in sorted(case_ids):
        groups[subject_of(case_id)].append(case_id)
    subjects = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(subjects))
    folds: list[list[str]] = [[] for _ in range(num_folds)]
    for index in order:
        smallest = min(range(num_folds), key=lambda k: (len(folds[k]), k))
        folds[smallest].extend(groups[subjects[index]])
    everything = sorted(case_ids)
    return [
        {"train": [c for c in everything if c not in set(val)], "val": sorted(val)} for val in folds
    ]


def load_or_create_splits(
    path: Path, case_ids: list[str], num_folds: int = 5, seed: int = 12345
) -> list[dict]:
    """Read ``splits.json`` if it exists (it may have been edited), else write it once."""
    if path.is_file():
        splits = read_splits(path)
        check_splits(splits, case_ids, path)
        return splits
    splits = make_splits(case_ids, num_folds, seed)
    write_json(path, splits)
    return splits


def read_splits(path: Path) -> list[dict]:
    """The folds of an existing ``splits.json``, refusing a file of another shape.

    Raises:
        InvalidInputError: the file is missing (training writes it on its first run) or
            is not a list of ``{"train": [...], "val": [...]}``.
    """
    if not path.is_file():
        raise InvalidInputError(f"{path}: missing (autoseg_train writes it on its first run)")
    splits = read_json(path)
    check_splits(splits, None, path)
    return splits


def check_splits(splits: object, case_ids: list[str] | None, where: Path) -> None:
    """Reject a splits file that names unknown cases (when ``case_ids`` are given) or is
    not a list of train/val folds."""
    if not isinstance(splits, list) or not all(
        isinstance(f, dict) and {"train", "val"} <= set(f) for f in splits
    ):
        raise InvalidInputError(f"{where}: must be a list of {{'train': [...], 'val': [...]}}")
    if case_ids is None:
        return
    known = set(case_ids)
    problems = [
        f"{where}: fold {k} names unknown case '{c}'"
        for k, fold in enumerate(splits)
        for c in sorted(set(fold["train"]) | set(fold["val"]))
        if c not in known
    ]
    if problems:
        raise InvalidInputError(problems)


def cases_of_fold(splits: list[dict], fold: int | str) -> tuple[list[str], list[str]]:
    """Training and validation case ids of ``fold`` (``"all"``: train on everything)."""
    if fold == "all":
        everything = sorted(set(splits[0]["train"]) | set(splits[0]["val"]))
        return everything, []
    index = int(fold)
    if not 0 <= index < len(splits):
        raise InvalidInputError(
            f"fold {fold} does not exist (splits have {len(splits)} folds: "
            f"0..{len(splits) - 1}, or 'all' to train on every case)"
        )
    return list(splits[index]["train"]), list(splits[index]["val"])
