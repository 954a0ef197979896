"""Structure checks of a raw dataset: dataset.json and which files exist under which names.

These need no voxel data, so they run in the main process before any file is read. They
go on past a broken dataset.json with best guesses (file ending and channel count taken
from the files) so that one run still lists every problem of the folder.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoseg.core.atomic import is_temporary, read_json
from autoseg.core.run_layout import DATASET_JSON
from autoseg.data.io import file_ending
from autoseg.data.layout import dataset_json_problems, split_channel_name
from autoseg.data.verify_case import CaseJob

DEFAULT_ENDING = ".nii.gz"


@dataclass(frozen=True)
class DatasetSettings:
    """What the file checks need from dataset.json, with guesses where it is unusable.

    Attributes:
        name: dataset name for the report.
        ending: file ending of every image and label file.
        num_channels: declared channel count; None when dataset.json does not say.
        label_values: declared label values; None when dataset.json does not say.
        num_training: declared numTraining; None when dataset.json does not say.
    """

    name: str
    ending: str
    num_channels: int | None
    label_values: frozenset[int] | None
    num_training: int | None


@dataclass
class LayoutScan:
    """Structure problems of a dataset folder and the per-case jobs for the content checks."""

    name: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    training: list[CaseJob] = field(default_factory=list)
    test: list[CaseJob] = field(default_factory=list)
    num_training: int = 0


def scan_layout(root: Path, tolerance_mm: float) -> LayoutScan:
    """Check dataset.json and the file names of a raw dataset folder; read no voxels.

    Args:
        root: the dataset folder (holding dataset.json, imagesTr, labelsTr, imagesTs).
        tolerance_mm: geometry tolerance handed on to the per-case jobs.

    Returns:
        Every structure problem found, and one job per case (labels without images get
        a job too, so their content is still checked).
    """
    if not root.is_dir():
        return LayoutScan(root.name, errors=[f"{root}: dataset folder not found"])
    payload, errors = _read_dataset_json(root / DATASET_JSON)
    settings = _settings(root, payload, errors)
    scan = LayoutScan(settings.name, errors=errors)
    images = _scan_images(root / "imagesTr", settings, scan, required=True)
    labels = _scan_labels(root / "labelsTr", settings, scan)
    _check_pairs(root, images, labels, settings, scan)
    _check_counts(root, len(images), settings, scan)
    tests = _scan_images(root / "imagesTs", settings, scan, required=False)
    scan.num_training = len(images)
    scan.training = _jobs(images, labels, settings, tolerance_mm)
    scan.test = _jobs(tests, {}, settings, tolerance_mm)
    return scan


def _read_dataset_json(path: Path) -> tuple[Any, list[str]]:
    if not path.is_file():
        return None, [f"{path}: missing (a raw dataset needs dataset.json)"]
    try:
        payload = read_json(path)
    except (ValueError, OSError) as error:
        # read_json names the file in its message already.
        return None, [" ".join(str(error).split())]
    return payload, dataset_json_problems(payload, path)


def _settings(root: Path, payload: Any, errors: list[str]) -> DatasetSettings:
    """Take each setting from dataset.json when valid there, else guess from the files."""
    payload = payload if isinstance(payload, dict) else {}
    ending = payload.get("file_ending")
    if not (isinstance(ending, str) and ending.startswith(".")):
        ending = _guess_ending(root / "imagesTr")
    channels = payload.get("channel_names", payload.get("modality"))
    channels_ok = isinstance(channels, dict) and sorted(channels) == [
        str(i) for i in range(len(channels))
    ]
    labels = payload.get("labels")
    labels_ok = isinstance(labels, dict) and all(_is_int(v) for v in labels.values())
    num_training = payload.get("numTraining")
    return DatasetSettings(
        name=str(payload.get("name") or root.name),
        ending=ending,
        num_channels=len(channels) if channels_ok and channels else None,
        label_values=frozenset(labels.values()) if labels_ok and labels else None,
        num_training=num_training if _is_int(num_training) and num_training >= 0 else None,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _guess_ending(folder: Path) -> str:
    """The most common ending in imagesTr: the best guess when dataset.json lacks one."""
    if not folder.is_dir():
        return DEFAULT_ENDING
    endings = Counter(file_ending(p) for p in folder.iterdir() if p.is_file())
    return endings.most_common(1)[0][0] if endings else DEFAULT_ENDING


def _entries(folder: Path, scan: LayoutScan) -> list[Path]:
    """Files of a folder that should follow the naming (partial writes and dotfiles skipped)."""
    entries = []
    for path in sorted(folder.iterdir()):
        if is_temporary(path):
            continue  # left by an interrupted atomic write; a re-run of convert replaces it
        if path.name.startswith("."):
            scan.warnings.append(f"{path}: hidden file ignored")
        elif path.is_dir():
            scan.errors.append(f"{path}: unexpected folder (only image files belong here)")
        else:
            entries.append(path)
    return entries


def _scan_images(
    folder: Path, settings: DatasetSettings, scan: LayoutScan, required: bool
) -> dict[str, dict[int, Path]]:
    """Group channel files by case; name each file that breaks the naming rules."""
    if not folder.is_dir():
        if required:
            scan.errors.append(f"{folder}: missing folder (training images go here)")
        return {}
    cases: dict[str, dict[int, Path]] = {}
    for path in _entries(folder, scan):
        problem = _image_name_problem(path, settings)
        if problem:
            scan.errors.append(problem)
            continue
        case_id, channel = split_channel_name(path.name, settings.ending)
        cases.setdefault(case_id, {})[channel] = path
    _check_channels(folder, cases, settings, scan)
    return cases


def _image_name_problem(path: Path, settings: DatasetSettings) -> str | None:
    ending = settings.ending
    if not path.name.endswith(ending):
        return f"{path}: file ending is not '{ending}' (dataset.json file_ending)"
    parsed = split_channel_name(path.name, ending)
    if parsed is None:
        return f"{path}: name lacks the channel suffix (expected <case>_0000{ending})"
    channels = settings.num_channels
    if channels is not None and parsed[1] >= channels:
        return f"{path}: channel {parsed[1]} but dataset.json declares {channels} channel(s)"
    return None


def _check_channels(
    folder: Path, cases: dict[str, dict[int, Path]], settings: DatasetSettings, scan: LayoutScan
) -> None:
    """Every case needs every channel; without a declared count, the largest seen counts."""
    expected = settings.num_channels
    if expected is None:
        expected = 1 + max((c for channels in cases.values() for c in channels), default=0)
    for case_id, channels in sorted(cases.items()):
        for channel in range(expected):
            if channel not in channels:
                missing = folder / f"{case_id}_{channel:04d}{settings.ending}"
                scan.errors.append(
                    f"{missing}: missing (case {case_id} needs {expected} channel(s))"
                )


def _scan_labels(folder: Path, settings: DatasetSettings, scan: LayoutScan) -> dict[str, Path]:
    if not folder.is_dir():
        scan.errors.append(f"{folder}: missing folder (training labels go here)")
        return {}
    labels = {}
    for path in _entries(folder, scan):
        if not path.name.endswith(settings.ending):
            ending = settings.ending
            scan.errors.append(f"{path}: file ending is not '{ending}' (dataset.json file_ending)")
            continue
        labels[path.name[: -len(settings.ending)]] = path
    return labels


def _check_pairs(
    root: Path,
    images: dict[str, dict[int, Path]],
    labels: dict[str, Path],
    settings: DatasetSettings,
    scan: LayoutScan,
) -> None:
    """A training case needs both its images and its label."""
    ending = settings.ending
    if (root / "labelsTr").is_dir():
        for case_id in sorted(set(images) - set(labels)):
            label = root / "labelsTr" / f"{case_id}{ending}"
            scan.errors.append(f"{label}: missing (case {case_id} has images but no label)")
    for case_id in sorted(set(labels) - set(images)):
        expected = root / "imagesTr" / f"{case_id}_0000{ending}"
        scan.errors.append(f"{labels[case_id]}: label without images (no {expected})")


def _check_counts(root: Path, num_cases: int, settings: DatasetSettings, scan: LayoutScan) -> None:
    if num_cases == 0:
        example = f"<case>_0000{settings.ending}"
        scan.errors.append(f"{root / 'imagesTr'}: no training cases (no {example} files)")
    declared = settings.num_training
    if declared is not None and declared != num_cases:
        scan.errors.append(
            f"{root / 'dataset.json'}: numTraining is {declared} "
            f"but imagesTr holds {num_cases} training case(s)"
        )


def _jobs(
    images: dict[str, dict[int, Path]],
    labels: dict[str, Path],
    settings: DatasetSettings,
    tolerance_mm: float,
) -> list[CaseJob]:
    """One job per case id, sorted, so results come back in a fixed order."""
    return [
        CaseJob(
            case_id=case_id,
            image_files=tuple(path for _, path in sorted(images.get(case_id, {}).items())),
            label_file=labels.get(case_id),
            label_values=settings.label_values,
            tolerance_mm=tolerance_mm,
        )
        for case_id in sorted(set(images) | set(labels))
    ]
