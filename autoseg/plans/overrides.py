"""``--set key=value`` overrides of plans: dotted paths into the JSON, types kept.

An override is applied to the JSON form and the result read again, so it passes the same
checks as a hand edit and is recorded under ``overrides``.
"""

from __future__ import annotations

import json
import typing
from typing import Any

from autoseg.core.errors import InvalidInputError
from autoseg.plans.files import finalize
from autoseg.plans.record import Record, field_names, thaw
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


def _known_keys(schema: Any, node: Any) -> set[str]:
    """Keys settable at a place: a record's every field, the ones the planner leaves out
    of the file included (``augmentation.probabilities``); a plain object's own keys;
    none below a value that is not an object."""
    if not isinstance(node, dict):
        return set()
    keys = set(field_names(type(schema))) if isinstance(schema, Record) else set(node)
    return keys - set(PROTECTED)


def _schema_child(schema: Any, key: str) -> Any:
    return getattr(schema, key) if isinstance(schema, Record) else schema[key]


def _unknown(key: str, part: str, where: str, known: set[str]) -> InvalidInputError:
    place = f" at {where}" if where else ""
    listed = ", ".join(sorted(known)) or "none"
    return InvalidInputError(f"--set {key}: unknown key '{part}'{place} (known: {listed})")


def _nullable(schema: Any, leaf: str) -> bool:
    """Whether a record field may hold null (a transform's range, say: null disables it)."""
    if not isinstance(schema, Record):
        return False
    hint = typing.get_type_hints(type(schema)).get(leaf)
    return type(None) in typing.get_args(hint)


def _set_one(payload: dict[str, Any], schema: Plans, assignment: str) -> None:
    """Apply one ``key=value`` to ``payload``, walking the read plans beside it so that a
    key the file leaves out but the schema knows can be set (its default gives the type)."""
    if "=" not in assignment:
        raise InvalidInputError(f"--set {assignment}: expected key=value")
    key, text = assignment.split("=", 1)
    parents, leaf = _override_target(payload, key.strip())
    node: Any = payload
    place: Any = schema
    for depth, part in enumerate(parents):
        known = _known_keys(place, node)
        if part not in known:
            raise _unknown(key, part, ".".join(parents[:depth]) or "top level", known)
        place = _schema_child(place, part)
        node = node.setdefault(part, thaw(place))
    known = _known_keys(place, node)
    if leaf not in known:
        raise _unknown(key, leaf, "", known)
    value = parse_value(text.strip())
    old = node[leaf] if leaf in node else thaw(_schema_child(place, leaf))
    if value is None and not _nullable(place, leaf):
        raise InvalidInputError(f"--set {key}: may not be null (like {json.dumps(old)})")
    if value is not None and old is not None and not _compatible(old, value):
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
    keep the type of the value they replace; ``null`` only where the schema allows it (a
    transform's range). Keys the planner leaves out of the file but the schema reads
    (``augmentation.probabilities``, ``training.loss_kwargs``) can be set too.

    Raises:
        InvalidInputError: an unknown key (listing the known ones) or a wrong value type.
    """
    payload = plans.to_json()
    for assignment in assignments:
        _set_one(payload, plans, assignment)
    payload["overrides"] = [*plans.overrides, *assignments]
    return finalize(payload)
