"""``--set key=value`` overrides of plans: dotted paths into the JSON, types kept.

An override is applied to the JSON form and the result read again, so it passes the same
checks as a hand edit and is recorded under ``overrides``.
"""

from __future__ import annotations

import json
from typing import Any

from autoseg.core.errors import InvalidInputError
from autoseg.plans.files import finalize
from autoseg.plans.schema import Plans

PROTECTED = ("plans_id", "schema_version")


def parse_value(text: str) -> Any:
    """An override value: JSON when it parses (``4``, ``[1, 2]``, ``true``), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def assignment_path(payload: dict[str, Any], key: str) -> list[str]:
    """``3d_hybrid.batch_size`` -> ``["configurations", "3d_hybrid", "batch_size"]``.

    A configuration's name may hold a dot (``2.5d_unet``), so names are matched whole
    before the rest of the key is split.
    """
    inner = key.removeprefix("configurations.")
    for name in sorted(payload["configurations"], key=len, reverse=True):
        if inner == name or inner.startswith(f"{name}."):
            rest = inner[len(name) + 1 :]
            return ["configurations", name, *(rest.split(".") if rest else [])]
    return key.split(".")


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
    if not isinstance(node, dict) or leaf not in node or leaf in PROTECTED:
        known = ", ".join(sorted(k for k in node if k not in PROTECTED))
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
    payload["overrides"] = [*plans.overrides, *assignments]
    return finalize(payload)
