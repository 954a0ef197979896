"""Loading a shared model zip safely: what it may hold, how large it may be, where it points.

A model zip comes from someone else. Before anything is extracted every member is checked
against the layout :func:`autoseg.pipeline.export.export_model_zip` writes (no other
files, no paths leaving the archive, no links), and the sizes its central directory states
against a cap, a compression-ratio bound and the free disk space; extraction then counts
the bytes it writes, so a member cannot grow past what was checked (a 3.5 MB zip must not
write 1 GiB). The contract may name only configuration folders inside the archive;
:func:`load_model_zip` then loads each with :meth:`TrainedModel.from_folder`.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from autoseg.core.atomic import read_json
from autoseg.core.errors import InvalidInputError
from autoseg.core.run_layout import (
    CHECKPOINTS,
    DATASET_JSON,
    FOLD_PREFIX,
    INFERENCE_JSON,
    PLANS_JSON,
    ConfigLayout,
    checkpoint_name,
)
from autoseg.data.capacity import size_text
from autoseg.inference.choice import planned_postprocessing
from autoseg.inference.model import TrainedModel, calibrated

CONTRACT_NAME = "inference_contract.json"
# What a results folder contributes to a model: JSON beside fold checkpoints, nothing else.
CONFIGURATION_NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
_FOLD = rf"{FOLD_PREFIX}(?:\d+|all)"
_CHECKPOINT = re.escape(checkpoint_name("KIND")).replace("KIND", f"(?:{'|'.join(CHECKPOINTS)})")
ALLOWED_MEMBERS = re.compile(
    rf"^(?:{re.escape(CONTRACT_NAME)}|{re.escape(INFERENCE_JSON)}"
    rf"|{CONFIGURATION_NAME}/(?:{re.escape(PLANS_JSON)}|{re.escape(DATASET_JSON)})"
    rf"|{CONFIGURATION_NAME}/{_FOLD}/{_CHECKPOINT}"
    rf"|{CONFIGURATION_NAME}/(?:{_FOLD}/)?)$"
)
ALLOWED_TEXT = (
    f"{CONTRACT_NAME}, <CONFIG>/plans.json, <CONFIG>/dataset.json and "
    "<CONFIG>/fold_<k>/checkpoint_<final|best|latest>.pt"
)
# 5 folds x 3 configurations of the largest planned network (~22 M parameters, 88 MB a
# checkpoint) is ~1.3 GB: 4 GiB leaves room and stops a bomb long before a disk fills.
MAX_TOTAL_BYTES = 4 * 1024**3
# Weights compress ~1.1x and JSON ~10x; a member inflating 100x is not a model file.
MAX_RATIO = 100
RATIO_SLACK_BYTES = 1024**2
COPY_CHUNK = 1 << 20


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a member may not be extracted (escape, link, not a model file), or None."""
    name = info.filename
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or ":" in path.parts[0]:
        return f"absolute path '{name}'"
    if ".." in path.parts:
        return f"path leaving the archive '{name}'"
    if stat.S_ISLNK(info.external_attr >> 16):
        return f"symbolic link '{name}'"
    if not ALLOWED_MEMBERS.match(name):
        return f"unexpected member '{name}' (a model zip holds {ALLOWED_TEXT} only)"
    return None


def size_problems(infos: list[zipfile.ZipInfo], free_bytes: int) -> list[str]:
    """Sizes the central directory states that no model needs (checked before extracting)."""
    problems = [
        f"member '{i.filename}' inflates {i.file_size / max(i.compress_size, 1):.0f}x "
        f"({size_text(i.compress_size)} -> {size_text(i.file_size)}; a model file "
        f"compresses {MAX_RATIO}x at most)"
        for i in infos
        if i.file_size > MAX_RATIO * i.compress_size + RATIO_SLACK_BYTES
    ]
    total = sum(i.file_size for i in infos)
    if total > MAX_TOTAL_BYTES:
        problems.append(
            f"{size_text(total)} uncompressed, over the {size_text(MAX_TOTAL_BYTES)} a model "
            "zip may hold"
        )
    elif total > free_bytes:
        problems.append(
            f"{size_text(total)} uncompressed, more than the {size_text(free_bytes)} free"
        )
    return problems


def _open(zip_path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as error:
        raise InvalidInputError(f"{zip_path}: not a readable zip ({error})") from error


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, root: Path) -> int:
    """Write one member below ``root``, never more bytes than its stated size."""
    destination = (root / info.filename).resolve()
    if root != destination and root not in destination.parents:
        raise InvalidInputError(f"'{info.filename}' leaves the archive")
    if info.is_dir():
        destination.mkdir(parents=True, exist_ok=True)
        return 0
    destination.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with archive.open(info) as source, open(destination, "wb") as target:
        while chunk := source.read(COPY_CHUNK):
            written += len(chunk)
            if written > info.file_size:
                raise InvalidInputError(f"member '{info.filename}' inflates past its stated size")
            target.write(chunk)
    return written


def safe_extract(zip_path: Path, target: Path) -> None:
    """Extract a model zip under ``target``, refusing it whole if any member is unsafe.

    Raises:
        InvalidInputError: an unreadable zip, unsafe or unexpected members, or sizes over
            the limits (each listed, naming the zip).
    """
    with _open(zip_path) as archive:
        infos = archive.infolist()
        problems = [p for i in infos if (p := member_problem(i))]
        problems += size_problems(infos, shutil.disk_usage(target).free)
        if problems:
            raise InvalidInputError([f"{zip_path}: refused: {p}" for p in problems])
        root, written = target.resolve(), 0
        try:
            for info in infos:
                written += _extract_member(archive, info, root)
                if written > MAX_TOTAL_BYTES:
                    raise InvalidInputError("extraction passed the size cap")
        except InvalidInputError as error:
            raise InvalidInputError(f"{zip_path}: refused: {error}") from error
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise InvalidInputError(f"{zip_path}: corrupt member ({error})") from error


def contract_configurations(contract: Any, root: Path, zip_path: Path) -> list[str]:
    """The configurations a contract names, each a folder of the extracted archive.

    Raises:
        InvalidInputError: the contract is not an object, or names anything but a
            configuration folder inside the archive (a path elsewhere on disk).
    """
    if not isinstance(contract, dict):
        raise InvalidInputError(f"{zip_path}: {CONTRACT_NAME} must be a JSON object")
    names = contract.get("configurations")
    if not isinstance(names, list) or not names:
        raise InvalidInputError(f"{zip_path}: the contract names no configuration")
    problems = [
        f"{zip_path}: the contract names '{name}', not a configuration folder of the archive"
        for name in names
        if not isinstance(name, str)
        or not re.fullmatch(CONFIGURATION_NAME, name)
        or not ConfigLayout(root / name).plans.is_file()
    ]
    if problems:
        raise InvalidInputError(problems)
    return list(names)


def load_model_zip(
    path: str | os.PathLike,
    device: str = "cpu",
    calibrate: bool = True,
    configurations: Sequence[str] | None = None,
) -> tuple[list[TrainedModel], dict[str, Any]]:
    """The models of an exported zip and the postprocessing of their ensemble (offline),
    each with the temperature its contract records unless ``calibrate`` is False.

    ``configurations`` picks a subset. The contract's postprocessing was chosen for the
    whole ensemble, so a proper subset gets the size rule of its first configuration's
    plans instead, as ``autoseg_predict -c`` does in a workspace.

    Raises:
        InvalidInputError: an unsafe or incomplete zip, a subset it does not hold, or
            checkpoints not matching their plans.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: model zip not found")
    with tempfile.TemporaryDirectory(prefix="autoseg-model-") as tmp:
        safe_extract(path, Path(tmp))
        contract_path = Path(tmp) / CONTRACT_NAME
        if not contract_path.is_file():
            raise InvalidInputError(f"{path}: no {CONTRACT_NAME} (not an autoseg model zip)")
        try:
            contract = read_json(contract_path)
        except ValueError as error:
            raise InvalidInputError(f"{path}: {error}") from error
        names = contract_configurations(contract, Path(tmp), path)
        post = dict(contract.get("postprocessing") or {})
        if configurations is not None and sorted(configurations) != sorted(names):
            wanted = set(configurations)
            names = [name for name in names if name in wanted]
            if not names:
                raise InvalidInputError(f"{path}: holds none of {list(configurations)}")
            post = planned_postprocessing(Path(tmp), names[0])
        per = contract.get("per_configuration") or {}
        checkpoint = contract.get("checkpoint", "final")
        models = [
            calibrated(
                TrainedModel.from_folder(Path(tmp) / name, (per.get(name) or {}).get("folds"),
                                         checkpoint, device),
                float((per.get(name) or {}).get("temperature", 1.0)) if calibrate else 1.0,
            )
            for name in names
        ]  # fmt: skip
    return models, post
