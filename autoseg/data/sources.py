"""Where each converted case came from: ``case_sources.json`` beside dataset.json.

Converters of BIDS sources (ATLAS, ISLES'22) record, per case id, the BIDS entities of
the source (``sub``, ``ses``, ``space``, ``acq`` ...), the source files per channel and
the mask, relative to the BIDS root they were found under. Prediction reads it back so
that outputs of ``raw/<NAME>/imagesTs`` can be named by subject and session again (BIDS
derivatives), and so that sidecars can point at the real source files.

``{"format_version": 1, "cases": {"<case>": {"split": "imagesTr", "entities": {...},
"bids_root": "/abs/rawdata", "files": [["DWI", "sub-X/ses-Y/dwi/..."], ...], "mask": ...}}}``
(``files`` is a list of pairs so that it keeps the channel order in key-sorted JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoseg.core.atomic import read_json, write_json
from autoseg.core.errors import InvalidInputError
from autoseg.data.bids import bids_label

CASE_SOURCES_JSON = "case_sources.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CaseSource:
    """The BIDS origin of one converted case.

    Attributes:
        case_id: the case id in the raw layout.
        entities: BIDS entities of the source image (``sub`` always, ``ses`` when given).
        split: ``imagesTr`` or ``imagesTs``.
        bids_root: the folder holding the ``sub-*`` folders of the source (absolute).
        files: ``{channel name: path relative to bids_root}`` in channel order.
        mask: the mask's path relative to ``bids_root`` (``../derivatives/...``), or None.
    """

    case_id: str
    entities: dict[str, str]
    split: str = "imagesTs"
    bids_root: str = ""
    files: dict[str, str] = field(default_factory=dict)
    mask: str | None = None

    def to_json(self) -> dict[str, Any]:
        files = [list(pair) for pair in self.files.items()]
        return {"entities": self.entities, "split": self.split, "bids_root": self.bids_root,
                "files": files, "mask": self.mask}  # fmt: skip

    @classmethod
    def from_json(cls, case_id: str, payload: dict[str, Any]) -> CaseSource:
        return cls(case_id, {str(k): str(v) for k, v in payload["entities"].items()},
                   payload.get("split", "imagesTs"), payload.get("bids_root", ""),
                   {str(k): str(v) for k, v in payload.get("files", [])},
                   payload.get("mask"))  # fmt: skip

    @property
    def source_paths(self) -> list[Path]:
        """The source image files, absolute."""
        return [Path(self.bids_root) / rel for rel in self.files.values()]

    @property
    def source_uris(self) -> list[str]:
        """The source image files as BIDS URIs into the ``raw`` dataset link."""
        return [f"bids:raw:{rel}" for rel in self.files.values()]


def guessed_source(case_id: str) -> CaseSource:
    """Entities for a case without a record: its BIDS-shaped id, else ``sub-<id>``.

    ``sub-01_ses-2`` keeps its subject and session; any other id becomes the subject
    label with non-alphanumeric characters dropped (``case_001`` -> ``sub-case001``).
    """
    parts = dict(p.split("-", 1) for p in case_id.split("_") if "-" in p)
    if "sub" in parts:
        entities = {k: bids_label(v) for k, v in parts.items() if k in ("sub", "ses")}
    else:
        entities = {"sub": bids_label(case_id)}
    return CaseSource(case_id, entities)


def write_case_sources(dataset_dir: Path, sources: list[CaseSource]) -> None:
    """Write ``case_sources.json`` (or remove a stale one when there is nothing to record)."""
    path = Path(dataset_dir) / CASE_SOURCES_JSON
    if not sources:
        path.unlink(missing_ok=True)
        return
    cases = {s.case_id: s.to_json() for s in sorted(sources, key=lambda s: s.case_id)}
    write_json(path, {"format_version": FORMAT_VERSION, "cases": cases})


def read_case_sources(path: Path) -> dict[str, CaseSource]:
    """``{case_id: CaseSource}`` of a ``case_sources.json``; a broken file names itself."""
    try:
        payload = read_json(path)
        return {c: CaseSource.from_json(c, v) for c, v in payload["cases"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise InvalidInputError(f"{path}: not a case sources file ({error})") from error


def find_case_sources(folder: Path) -> dict[str, CaseSource]:
    """The record beside an input folder (``imagesTs/..`` or the folder itself), or {}."""
    for candidate in (Path(folder) / CASE_SOURCES_JSON, Path(folder).parent / CASE_SOURCES_JSON):
        if candidate.is_file():
            return read_case_sources(candidate)
    return {}
