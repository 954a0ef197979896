"""BIDS file names: entities, their order, and the naming rules of our derivatives.

A BIDS name is ``key-value`` entities joined by ``_``, then ``_<suffix><extension>``
(``sub-01_ses-1_space-MNI152NLin2009aSym_desc-lesion_mask.nii.gz``). Entities appear in
the order of :data:`ENTITY_ORDER` (the BIDS specification's entity table); labels are
alphanumeric. Converters read source names with :func:`parse_name`; the prediction
writer builds derivative names with :meth:`BidsName.with_entities`; and
:func:`derivative_problems` checks a written derivative folder against the rules we
follow (see its docstring), so tests and users can validate an output tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoseg.core.atomic import read_json

# The BIDS specification's entity table (v1.9), in the order names must use.
ENTITY_ORDER = ("sub", "ses", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc",
                "stain", "rec", "dir", "run", "mod", "echo", "flip", "inv", "mt", "part",
                "proc", "hemi", "space", "split", "recording", "chunk", "seg", "res", "den",
                "label", "desc")  # fmt: skip
NAME = re.compile(
    r"^(?P<entities>(?:[a-zA-Z]+-[a-zA-Z0-9]+_)+)(?P<suffix>[a-zA-Z0-9]+)(?P<ext>\..+)$"
)
LABEL = re.compile(r"^[a-zA-Z0-9]+$")
NON_LABEL = re.compile(r"[^a-zA-Z0-9]+")
DESCRIPTION_FILE = "dataset_description.json"
# Derivative suffixes we write, and the sidecar keys each must carry.
SIDECAR_KEYS = {"mask": ("Type", "Sources", "SpatialReference"),
                "probseg": ("Sources", "SpatialReference")}  # fmt: skip
PROVENANCE_KEY = "GeneratedBy"
IMAGE_EXTENSIONS = (".nii.gz", ".nii")
DATATYPE = "anat"
ROOT_FILES = re.compile(r"^(README.*|CHANGES|LICENSE|[a-z0-9_]+\.(tsv|json))$")
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class BidsName:
    """A parsed BIDS file name.

    Attributes:
        entities: ``(key, value)`` pairs in the order the name spells them.
        suffix: the part after the last entity (``dwi``, ``T1w``, ``mask``).
        extension: ``.nii.gz``, ``.json`` ...
    """

    entities: tuple[tuple[str, str], ...]
    suffix: str
    extension: str

    def get(self, key: str) -> str | None:
        return dict(self.entities).get(key)

    @property
    def name(self) -> str:
        """The file name with entities in the specification's order."""
        ordered = sorted(self.entities, key=lambda kv: _order(kv[0]))
        return "_".join(f"{k}-{v}" for k, v in ordered) + f"_{self.suffix}{self.extension}"

    def with_entities(self, suffix: str, extension: str, **changes: str | None) -> BidsName:
        """Another name with some entities set (None drops one), suffix and extension."""
        entities = dict(self.entities)
        for key, value in changes.items():
            if value is None:
                entities.pop(key, None)
            else:
                entities[key] = value
        return BidsName(tuple(entities.items()), suffix, extension)


def _order(key: str) -> int:
    return ENTITY_ORDER.index(key) if key in ENTITY_ORDER else len(ENTITY_ORDER)


def parse_name(file_name: str) -> BidsName | None:
    """``sub-01_ses-1_dwi.nii.gz`` -> BidsName; None for a name that is not BIDS-shaped."""
    match = NAME.match(file_name)
    if match is None:
        return None
    pairs = [part.split("-", 1) for part in match.group("entities").rstrip("_").split("_")]
    return BidsName(tuple((k, v) for k, v in pairs), match.group("suffix"), match.group("ext"))


def bids_label(text: str) -> str:
    """A valid entity label from any text: only letters and digits are kept."""
    return NON_LABEL.sub("", text) or "unknown"


def subject_folder(entities: Mapping[str, str]) -> Path:
    """``sub-X/ses-Y/anat`` (``sub-X/anat`` without a session)."""
    parts = [f"sub-{entities['sub']}"]
    if entities.get("ses"):
        parts.append(f"ses-{entities['ses']}")
    return Path(*parts, DATATYPE)


# --- validation ---------------------------------------------------------------------------


def name_problems(path: Path, root: Path) -> list[str]:
    """Why the name or place of one derivative image/sidecar breaks the rules (or [])."""
    parsed = parse_name(path.name)
    if parsed is None:
        return [f"{path}: not a BIDS name (entities, then _<suffix><extension>)"]
    keys = [k for k, _ in parsed.entities]
    problems = [f"{path}: unknown entity '{k}'" for k in keys if k not in ENTITY_ORDER]
    if len(set(keys)) != len(keys):
        problems.append(f"{path}: an entity appears twice")
    if [k for k in keys if k in ENTITY_ORDER] != sorted(
        (k for k in keys if k in ENTITY_ORDER), key=_order
    ):
        problems.append(f"{path}: entities out of order (BIDS order: {', '.join(ENTITY_ORDER)})")
    problems += [f"{path}: label '{v}' of '{k}' is not alphanumeric"
                 for k, v in parsed.entities if not LABEL.match(v)]  # fmt: skip
    if not keys or keys[0] != "sub":
        problems.append(f"{path}: the first entity must be 'sub'")
    elif path.parent.relative_to(root) != subject_folder(dict(parsed.entities)):
        expected = subject_folder(dict(parsed.entities))
        problems.append(f"{path}: belongs in {expected}/ (its sub/ses entities)")
    if parsed.suffix not in SIDECAR_KEYS:
        problems.append(f"{path}: suffix '{parsed.suffix}' not one of {sorted(SIDECAR_KEYS)}")
    if parsed.extension not in (*IMAGE_EXTENSIONS, ".json"):
        problems.append(f"{path}: extension '{parsed.extension}' not NIfTI or .json")
    return problems


def sidecar_path(image: Path) -> Path:
    """The JSON sidecar of a derivative image (same name, ``.json``)."""
    ending = next((e for e in IMAGE_EXTENSIONS if image.name.endswith(e)), image.suffix)
    return image.with_name(image.name[: -len(ending)] + ".json")


def sidecar_problems(image: Path, required_provenance: Iterable[str]) -> list[str]:
    """A missing sidecar, or required keys it lacks (BIDS keys and our provenance keys)."""
    sidecar = sidecar_path(image)
    if not sidecar.is_file():
        return [f"{image}: no JSON sidecar {sidecar.name}"]
    try:
        payload = read_json(sidecar)
    except ValueError as error:
        return [str(error)]
    parsed = parse_name(image.name)
    required = SIDECAR_KEYS.get(parsed.suffix if parsed else "", ())
    problems = [f"{sidecar}: lacks '{key}'" for key in (*required, PROVENANCE_KEY)
                if key not in payload]  # fmt: skip
    sources = payload.get("Sources")
    if "Sources" in payload and not (isinstance(sources, list) and sources):
        problems.append(f"{sidecar}: 'Sources' must be a non-empty list")
    provenance = payload.get(PROVENANCE_KEY)
    if isinstance(provenance, dict):
        problems += [f"{sidecar}: '{PROVENANCE_KEY}' lacks '{key}'"
                     for key in required_provenance if key not in provenance]  # fmt: skip
    elif PROVENANCE_KEY in payload:
        problems.append(f"{sidecar}: '{PROVENANCE_KEY}' must be an object")
    return problems


def description_problems(root: Path) -> list[str]:
    """dataset_description.json of a derivative: Name, BIDSVersion, DatasetType, GeneratedBy."""
    path = root / DESCRIPTION_FILE
    if not path.is_file():
        return [f"{path}: missing"]
    try:
        payload: Any = read_json(path)
    except ValueError as error:
        return [str(error)]
    problems = [f"{path}: lacks '{key}'" for key in ("Name", "BIDSVersion") if key not in payload]
    if payload.get("DatasetType") != "derivative":
        problems.append(f"{path}: 'DatasetType' must be 'derivative'")
    generated = payload.get("GeneratedBy")
    if not (isinstance(generated, list) and generated
            and all(isinstance(g, dict) and "Name" in g for g in generated)):  # fmt: skip
        problems.append(f"{path}: 'GeneratedBy' must be a list of objects with a 'Name'")
    return problems


def table_problems(path: Path) -> list[str]:
    """A root TSV: snake-case header, rows as wide as it, a JSON describing every column."""
    lines = path.read_text().splitlines()
    if not lines:
        return [f"{path}: empty (a table has at least its header)"]
    header = lines[0].split("\t")
    problems = [f"{path}: column '{c}' is not snake_case" for c in header
                if not SNAKE_CASE.match(c)]  # fmt: skip
    for number, line in enumerate(lines[1:], 2):
        cells = len(line.split("\t"))
        if cells != len(header):
            problems.append(f"{path}: line {number} has {cells} cells, not {len(header)}")
    dictionary = path.with_suffix(".json")
    if not dictionary.is_file():
        return [*problems, f"{path}: no column dictionary {dictionary.name}"]
    described = read_json(dictionary)
    return problems + [f"{dictionary}: no description of column '{c}'"
                       for c in header if c not in described]  # fmt: skip


def derivative_problems(root: str | Path, required_provenance: Iterable[str] = ()) -> list[str]:
    """Every way a derivative folder breaks the naming rules we follow; [] when it is valid.

    The rules: ``dataset_description.json`` with ``Name``, ``BIDSVersion``, ``DatasetType:
    derivative`` and ``GeneratedBy``; at the root only that file, README/CHANGES/LICENSE,
    snake-case TSV tables each with a JSON column dictionary, and ``sub-<label>`` folders;
    images under ``sub-X[/ses-Y]/anat/`` named by known entities in BIDS order with
    alphanumeric labels whose sub/ses match the folders, suffix ``mask`` or ``probseg``,
    NIfTI extension, each with a JSON sidecar holding the BIDS keys of
    :data:`SIDECAR_KEYS` and a ``GeneratedBy`` object with ``required_provenance`` keys.

    Args:
        root: the derivative folder (``--bids-out``).
        required_provenance: keys the sidecars' ``GeneratedBy`` object must hold.
    """
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: not a folder"]
    required = tuple(required_provenance)
    problems = description_problems(root)
    for path in sorted(root.iterdir()):
        if path.is_dir() and not path.name.startswith("sub-"):
            problems.append(f"{path}: only sub-<label> folders belong at the root")
        elif path.is_file() and not ROOT_FILES.match(path.name):
            problems.append(f"{path}: not a file that belongs at the root")
        elif path.is_file() and path.name.endswith(".tsv"):
            problems += table_problems(path)
    for path in sorted(p for p in root.glob("sub-*/**/*") if p.is_file()):
        problems += name_problems(path, root)
        if path.name.endswith(IMAGE_EXTENSIONS):
            problems += sidecar_problems(path, required)
        elif path.suffix == ".json" and not any(
            path.with_name(path.name[: -len(".json")] + e).is_file() for e in IMAGE_EXTENSIONS
        ):
            problems.append(f"{path}: sidecar without its image")
    return problems
