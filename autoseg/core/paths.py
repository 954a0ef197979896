"""Checks of the paths a command is given, made before any work starts.

A read-only output folder, an output path that is a file, or a dataset name like ``..``
would otherwise surface as a traceback after the first case (or write outside the raw
root); each check here fails with one line naming the path.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from autoseg.core.atomic import TEMP_PREFIX
from autoseg.core.errors import InvalidInputError


def _existing_ancestor(path: Path) -> Path:
    """The nearest of ``path`` and its parents that exists (a folder is made below it)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def ensure_writable_dir(path: str | os.PathLike, what: str) -> Path:
    """Refuse a folder this process cannot write in (or create), before the work starts.

    The probe writes and removes a file where the folder is (or would be made): write
    permission bits do not tell about read-only mounts, nor about root.

    Args:
        path: the folder the command will write in; it need not exist yet.
        what: what the folder is, for the message (``"output folder"``).

    Raises:
        InvalidInputError: ``path`` is a file, sits below a file, or is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"{path}: {what} is a file, not a folder")
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise InvalidInputError(f"{path}: {what} cannot be made: {ancestor} is a file")
    try:
        handle, probe = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}probe-", dir=ancestor)
    except OSError as error:
        where = "" if ancestor == path else f" ({ancestor} is where it would be made)"
        raise InvalidInputError(
            f"{path}: {what} is not writable: {error.strerror}{where}"
        ) from error
    os.close(handle)
    os.unlink(probe)
    return path


def ensure_writable_file(path: str | os.PathLike, what: str) -> Path:
    """Refuse an output file that is a folder or whose folder cannot be written.

    Raises:
        InvalidInputError: one line naming the path.
    """
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"{path}: {what} is a folder, not a file")
    ensure_writable_dir(path.parent, f"folder of the {what}")
    return path


def dataset_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a dataset folder below a root, or None when it can.

    A name is one folder name: ``""`` would write into the raw root itself and
    ``../../x`` outside it.
    """
    if not name or not name.strip():
        return "a dataset name must not be empty"
    if name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        return f"dataset name '{name}' must be one folder name (no '/', '\\' or '..')"
    if name.startswith("."):
        return f"dataset name '{name}' must not start with '.' (hidden folders are skipped)"
    return None


def check_dataset_name(name: str) -> str:
    """``name`` when it is a usable dataset name.

    Raises:
        InvalidInputError: the reason it is not.
    """
    problem = dataset_name_problem(name)
    if problem:
        raise InvalidInputError(problem)
    return name
