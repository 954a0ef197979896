"""The plans.json schema: typed records, validation, content hash, ``--set`` overrides.

plans.json is the single source of truth for everything that changes results
(DESIGN §10, §11). ``plans_id`` is a hash of everything else in the file, so a checkpoint
that records it can never be used with other plans. Hand edits are allowed: loading
recomputes the id from the content.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoseg.core.atomic import atomic_path, read_json
from autoseg.core.errors import InvalidInputError
from autoseg.planning.jsonutil import canonical_json, content_hash, round_floats

SCHEMA_VERSION = 1
CONFIGURATIONS = ("3d_hybrid", "2.5d_unet", "2d_lcnn")
MEMORY_SOURCES = ("detected", "flag", "default")
CONFIG_KEYS = {
    "data_id": str,
    "spacing_mm": list,
    "patch_size": list,
    "batch_size": int,
    "normalization": list,
    "network": dict,
    "parameters": int,
    "memory_estimate_gb": float,
    "training": dict,
    "augmentation": dict,
    "inference": dict,
}
POSITIVE_TRAINING_KEYS = ("epochs", "iterations_per_epoch", "validation_iterations")
TOP_KEYS = {
    "schema_version": int,
    "plans_id": str,
    "dataset": str,
    "gpu_memory_gb": float,
    "gpu_memory_source": str,
    "device": str,
    "recommended_configuration": str,
    "configurations": dict,
}


@dataclass(frozen=True)
class Plans:
    """A validated plans.json: ``payload`` is the JSON object, ``plans_id`` its hash."""

    payload: dict[str, Any] = field(repr=False)

    @property
    def plans_id(self) -> str:
        return self.payload["plans_id"]

    @property
    def dataset(self) -> str:
        return self.payload["dataset"]

    @property
    def configurations(self) -> dict[str, dict[str, Any]]:
        return self.payload["configurations"]

    def configuration(self, name: str) -> dict[str, Any]:
        """One configuration's entry; unknown names fail with the list of known ones."""
        if name not in self.configurations:
            known = ", ".join(sorted(self.configurations))
            raise InvalidInputError(f"plans: no configuration '{name}' (known: {known})")
        return self.configurations[name]

    def to_json(self) -> dict[str, Any]:
        return copy.deepcopy(self.payload)

    def text(self) -> str:
        """The exact bytes written to plans.json."""
        return canonical_json(self.payload)


def compute_plans_id(payload: dict[str, Any]) -> str:
    """Content hash of a plans payload, excluding the ``plans_id`` field itself."""
    return content_hash({k: v for k, v in payload.items() if k != "plans_id"})


def finalize(payload: dict[str, Any]) -> Plans:
    """Round floats, stamp schema version and plans_id, and validate."""
    body = round_floats({k: v for k, v in payload.items() if k != "plans_id"}, 6)
    _refresh_data_ids(body)
    body["schema_version"] = SCHEMA_VERSION
    body["plans_id"] = compute_plans_id(body)
    problems = plans_problems(body, "plans")
    if problems:
        raise InvalidInputError(problems)
    return Plans(body)


def _type_problems(payload: dict, schema: dict[str, type], where: str) -> list[str]:
    problems = []
    for key, kind in schema.items():
        if key not in payload:
            problems.append(f"{where}: missing '{key}'")
            continue
        value = payload[key]
        ok = isinstance(value, int | float) if kind is float else isinstance(value, kind)
        if ok and kind is int and isinstance(value, bool):
            ok = False
        if not ok:
            problems.append(f"{where}: '{key}' must be {kind.__name__}, got {value!r}")
    return problems


def _configuration_problems(config: Any, where: str) -> list[str]:
    if not isinstance(config, dict):
        return [f"{where}: must be an object"]
    problems = _type_problems(config, CONFIG_KEYS, where)
    if problems:
        return problems
    patch = config["patch_size"]
    if not patch or not all(isinstance(v, int) and v > 0 for v in patch):
        problems.append(f"{where}: 'patch_size' must be positive integers, got {patch}")
    if config["batch_size"] < 1:
        problems.append(f"{where}: 'batch_size' must be >= 1, got {config['batch_size']}")
    network = config["network"]
    if not isinstance(network.get("name"), str) or not isinstance(network.get("kwargs"), dict):
        problems.append(f"{where}: 'network' must be {{'name': str, 'kwargs': {{...}}}}")
    if len(config["spacing_mm"]) != 3:
        problems.append(f"{where}: 'spacing_mm' must have 3 entries (z, y, x)")
    return problems + _count_problems(config["training"], where)


def _count_problems(training: dict[str, Any], where: str) -> list[str]:
    """Run lengths must be positive: -1 epochs would 'finish' an untrained network."""
    problems = []
    for key in (k for k in POSITIVE_TRAINING_KEYS if k in training):
        value = training[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{where}: 'training.{key}' must be a positive integer, got {value!r}")
    return problems


def plans_problems(payload: Any, where: str | Path) -> list[str]:
    """Every schema problem of a plans payload, one line each naming the file."""
    if not isinstance(payload, dict):
        return [f"{where}: must be a JSON object"]
    problems = _type_problems(payload, TOP_KEYS, str(where))
    if problems:
        return problems
    if payload["schema_version"] != SCHEMA_VERSION:
        problems.append(
            f"{where}: schema_version {payload['schema_version']} is not supported "
            f"(this autoseg reads {SCHEMA_VERSION}); re-run autoseg_plan"
        )
    if payload["gpu_memory_source"] not in MEMORY_SOURCES:
        problems.append(f"{where}: 'gpu_memory_source' must be one of {MEMORY_SOURCES}")
    if payload["recommended_configuration"] not in payload["configurations"]:
        problems.append(f"{where}: 'recommended_configuration' names no configuration")
    for name, config in sorted(payload["configurations"].items()):
        problems += _configuration_problems(config, f"{where}: configurations.{name}")
    return problems


def load_plans(path: str | Path) -> Plans:
    """Read and validate plans.json; the id is recomputed so hand edits get a new one.

    Raises:
        InvalidInputError: missing file, invalid JSON or schema problems (one per line).
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: plans missing (run autoseg_plan first)")
    try:
        payload = read_json(path)
    except ValueError as error:
        raise InvalidInputError(str(error)) from error
    problems = plans_problems(payload, path)
    if problems:
        raise InvalidInputError(problems)
    payload["plans_id"] = compute_plans_id(payload)
    return Plans(payload)


def write_plans(path: str | Path, plans: Plans) -> None:
    """Write plans.json atomically, byte-identical for identical plans."""
    with atomic_path(path) as temp:
        temp.write_text(plans.text())


def parse_value(text: str) -> Any:
    """An override value: JSON when it parses (``4``, ``[1, 2]``, ``true``), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def assignment_path(payload: dict[str, Any], key: str) -> list[str]:
    """``3d_hybrid.batch_size`` -> ``["configurations", "3d_hybrid", "batch_size"]``."""
    parts = key.split(".")
    if parts[0] in payload["configurations"]:
        parts = ["configurations", *parts]
    return parts


def _override_target(payload: dict[str, Any], key: str) -> tuple[list[str], str]:
    """Resolve ``3d_hybrid.batch_size`` -> path under the payload; ``configurations.`` optional."""
    parts = assignment_path(payload, key)
    return parts[:-1], parts[-1]


def _set_one(payload: dict[str, Any], assignment: str) -> None:
    if "=" not in assignment:
        raise InvalidInputError(f"--set {assignment}: expected key=value")
    key, text = assignment.split("=", 1)
    parents, leaf = _override_target(payload, key.strip())
    node: Any = payload
    for depth, part in enumerate(parents):
        if not isinstance(node, dict) or part not in node:
            known = ", ".join(sorted(node)) if isinstance(node, dict) else "none"
            where = ".".join(parents[:depth]) or "top level"
            raise InvalidInputError(
                f"--set {key}: unknown key '{part}' at {where} (known: {known})"
            )
        node = node[part]
    if not isinstance(node, dict) or leaf not in node or leaf in ("plans_id", "schema_version"):
        known = ", ".join(sorted(k for k in node if k not in ("plans_id", "schema_version")))
        raise InvalidInputError(f"--set {key}: unknown key '{leaf}' (known: {known})")
    value, old = parse_value(text.strip()), node[leaf]
    if old is not None and not _compatible(old, value):
        raise InvalidInputError(
            f"--set {key}: expected {type(old).__name__} like {json.dumps(old)}, got {text!r}"
        )
    node[leaf] = value


def _compatible(old: Any, new: Any) -> bool:
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, int | float) and isinstance(new, int | float):
        return not (isinstance(old, int) and isinstance(new, float) and not new.is_integer())
    return isinstance(new, type(old))


def apply_overrides(plans: Plans, assignments: list[str]) -> Plans:
    """A new Plans with ``key=value`` overrides applied and recorded under ``overrides``.

    Keys are dotted paths: ``3d_hybrid.batch_size=4``, ``3d_hybrid.training.epochs=50``,
    ``recommended_configuration=2d_lcnn``. Values parse as JSON, else as strings, and must
    keep the type of the value they replace.

    Raises:
        InvalidInputError: an unknown key (listing the known ones) or a wrong value type.
    """
    payload = plans.to_json()
    for assignment in assignments:
        _set_one(payload, assignment)
    payload["overrides"] = [*payload.get("overrides", []), *assignments]
    return finalize(payload)


def _refresh_data_ids(payload: dict[str, Any]) -> None:
    """Overrides of spacing or normalisation must land in another cache folder."""
    from autoseg.planning.preprocessing_entry import data_id_for

    for config in payload["configurations"].values():
        config["data_id"] = data_id_for(config)
