"""The raw dataset layout (nnU-Net v2's): dataset.json, imagesTr, labelsTr, imagesTs.

``imagesTr/<case>_<cccc><ending>`` holds channel ``cccc`` of a case and
``labelsTr/<case><ending>`` its label map; existing nnU-Net datasets work as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoseg.core.atomic import is_temporary, read_json, write_json
from autoseg.core.errors import InvalidInputError
from autoseg.core.run_layout import DATASET_JSON
from autoseg.data.records import Case

CHANNEL_SUFFIX = re.compile(r"^(.+)_(\d{4})$")


@dataclass(frozen=True)
class DatasetJson:
    """The fields of dataset.json that autoseg reads; ``extra`` keeps the rest as it was."""

    name: str
    channel_names: dict[str, str]
    labels: dict[str, int]
    num_training: int
    file_ending: str = ".nii.gz"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def label_values(self) -> set[int]:
        return {int(v) for v in self.labels.values()}

    def to_json(self) -> dict[str, Any]:
        payload = dict(self.extra)
        payload.update(
            name=self.name,
            channel_names=self.channel_names,
            labels=self.labels,
            numTraining=self.num_training,
            file_ending=self.file_ending,
        )
        return payload


def dataset_json_problems(payload: Any, where: Path) -> list[str]:
    """Every schema problem of a dataset.json payload, one line each naming the file."""
    if not isinstance(payload, dict):
        return [f"{where}: must be a JSON object"]
    problems = []
    channels = payload.get("channel_names", payload.get("modality"))
    if not isinstance(channels, dict) or not channels:
        problems.append(f"{where}: 'channel_names' must be a non-empty object like {{'0': 'T1'}}")
    elif sorted(channels) != [str(i) for i in range(len(channels))]:
        problems.append(f"{where}: 'channel_names' keys must be '0'..'{len(channels) - 1}'")
    labels = payload.get("labels")
    if not isinstance(labels, dict) or not labels:
        problems.append(f"{where}: 'labels' must be a non-empty object like {{'background': 0}}")
    elif not all(isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):
        problems.append(f"{where}: 'labels' values must be integers (region labels unsupported)")
    elif 0 not in labels.values():
        problems.append(f"{where}: 'labels' must map a name (e.g. 'background') to 0")
    num_training = payload.get("numTraining")
    if not isinstance(num_training, int) or isinstance(num_training, bool) or num_training < 0:
        problems.append(f"{where}: 'numTraining' must be a non-negative integer")
    ending = payload.get("file_ending")
    if not isinstance(ending, str) or not ending.startswith("."):
        problems.append(f"{where}: 'file_ending' must be a string like '.nii.gz'")
    return problems


def parse_dataset_json(payload: dict[str, Any], where: Path) -> DatasetJson:
    """Validate and type a dataset.json payload (raises with every problem listed)."""
    problems = dataset_json_problems(payload, where)
    if problems:
        raise InvalidInputError(problems)
    known = {"name", "channel_names", "modality", "labels", "numTraining", "file_ending"}
    channels = payload.get("channel_names", payload.get("modality"))
    return DatasetJson(
        name=str(payload.get("name", where.parent.name)),
        channel_names={str(k): str(v) for k, v in channels.items()},
        labels={str(k): int(v) for k, v in payload["labels"].items()},
        num_training=int(payload["numTraining"]),
        file_ending=payload["file_ending"],
        extra={k: v for k, v in payload.items() if k not in known},
    )


def split_channel_name(file_name: str, ending: str) -> tuple[str, int] | None:
    """``case_0003.nii.gz`` -> ``("case", 3)``; None when the name has no channel suffix."""
    if not file_name.endswith(ending):
        return None
    match = CHANNEL_SUFFIX.match(file_name[: -len(ending)])
    return (match.group(1), int(match.group(2))) if match else None


@dataclass(frozen=True)
class RawDataset:
    """A raw dataset folder in the nnU-Net v2 layout."""

    root: Path
    dataset_json: DatasetJson

    @classmethod
    def open(cls, root: str | Path) -> RawDataset:
        """Open a dataset folder, validating its dataset.json."""
        root = Path(root)
        json_path = root / DATASET_JSON
        if not json_path.is_file():
            raise InvalidInputError(f"{json_path}: missing (not a raw dataset folder)")
        return cls(root, parse_dataset_json(read_json(json_path), json_path))

    @property
    def name(self) -> str:
        """The folder's name: the key preprocessed/ and results/ file this dataset under."""
        return self.root.name

    @property
    def images_tr(self) -> Path:
        return self.root / "imagesTr"

    @property
    def labels_tr(self) -> Path:
        return self.root / "labelsTr"

    @property
    def images_ts(self) -> Path:
        return self.root / "imagesTs"

    def training_cases(self) -> list[Case]:
        """Cases of imagesTr with their label files (which may be missing on disk)."""
        ending = self.dataset_json.file_ending
        return [
            Case(case_id, files, self.labels_tr / f"{case_id}{ending}")
            for case_id, files in sorted(self._group_channels(self.images_tr).items())
        ]

    def test_cases(self) -> list[Case]:
        """Cases of imagesTs (no labels)."""
        return [
            Case(case_id, files)
            for case_id, files in sorted(self._group_channels(self.images_ts).items())
        ]

    def _group_channels(self, folder: Path) -> dict[str, tuple[Path, ...]]:
        channels = self.dataset_json.num_channels
        ending = self.dataset_json.file_ending
        groups: dict[str, tuple[Path, ...]] = {}
        for case_id in sorted(case_ids_in(folder, ending)):
            groups[case_id] = tuple(folder / f"{case_id}_{c:04d}{ending}" for c in range(channels))
        return groups


def case_ids_in(folder: Path, ending: str) -> set[str]:
    """Case ids of the channel files in ``folder`` (temporary files are ignored)."""
    if not folder.is_dir():
        return set()
    ids = set()
    for path in folder.iterdir():
        parsed = split_channel_name(path.name, ending)
        if parsed and not is_temporary(path):
            ids.add(parsed[0])
    return ids


def write_dataset_json(root: Path, dataset_json: DatasetJson) -> None:
    """Write ``root/dataset.json`` atomically."""
    write_json(root / DATASET_JSON, dataset_json.to_json())
