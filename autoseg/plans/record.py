"""Frozen JSON records: unknown keys refused, missing keys defaulted, absent keys kept absent.

Every part of plans.json is a :class:`Record`. Reading fills a key the file leaves out with
the field's default (so results folders planned before a key existed still load) and
remembers that it was left out, so writing gives back the same bytes: ``plans_id`` is a
hash of the file's content, and a checkpoint records it. Values are kept as read (an ``int``
where a float field holds one stays an ``int``) for the same reason.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from autoseg.core.errors import InvalidInputError

Decoder = Callable[[Any, str], Any]
R = TypeVar("R", bound="Record")


def freeze(value: Any) -> Any:
    """JSON lists become tuples (records are immutable); objects are copied as dicts."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return copy.deepcopy(value)


def thaw(value: Any) -> Any:
    """The JSON form of a record field: records and tuples become objects and lists."""
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    return value


def child(where: str, key: str) -> str:
    """``plans.json: configurations`` -> ``plans.json: configurations.2d_lcnn``."""
    return f"{where}.{key}" if ": " in where else f"{where}: {key}"


def field_names(cls: type) -> tuple[str, ...]:
    """The JSON keys of a record class, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "absent_keys")


@dataclass(frozen=True)
class Record:
    """Base of the plans records.

    Attributes:
        absent_keys: keys the source JSON left out (filled with defaults on reading,
            left out again on writing).
    """

    absent_keys: frozenset[str] = field(
        default=frozenset(), repr=False, compare=False, kw_only=True
    )
    # field name -> decoder of its JSON value (nested records); other fields use freeze
    DECODERS: ClassVar[dict[str, Decoder]] = {}
    # keys a new record leaves out of its JSON unless given (settings planners do not write)
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def new(cls: type[R], **values: Any) -> R:
        """A record as a planner writes it: the :attr:`OPTIONAL` keys only when given."""
        return cls(**values, absent_keys=cls.OPTIONAL - set(values))

    @classmethod
    def from_json(cls: type[R], payload: Any, where: str, base: Record | None = None) -> R:
        """Read a JSON object; missing keys take ``base``'s values (default: the defaults).

        Raises:
            InvalidInputError: not an object, unknown keys (each named with ``where``, the
                file and the path inside it) or a missing key without a default.
        """
        if not isinstance(payload, Mapping):
            raise InvalidInputError(f"{where}: must be a JSON object")
        names = field_names(cls)
        unknown = sorted(set(payload) - set(names))
        if unknown:
            known = ", ".join(sorted(names))
            raise InvalidInputError(
                [f"{where}: unknown key '{k}' (known: {known})" for k in unknown]
            )
        values = {n: cls._decode(n, payload[n], child(where, n)) for n in names if n in payload}
        absent = frozenset(names) - set(payload)
        if base is not None:
            values |= {name: getattr(base, name) for name in absent}
        required = [f.name for f in dataclasses.fields(cls) if _required(f) and f.name in absent]
        if required:
            raise InvalidInputError([f"{where}: missing '{name}'" for name in required])
        try:
            return cls(**values, absent_keys=absent)
        except InvalidInputError:
            raise
        except (TypeError, ValueError) as error:  # a record's own checks (__post_init__)
            raise InvalidInputError(f"{where}: {error}") from error

    @classmethod
    def _decode(cls, name: str, value: Any, where: str) -> Any:
        decoder = cls.DECODERS.get(name)
        return freeze(value) if decoder is None or value is None else decoder(value, where)

    def to_json(self) -> dict[str, Any]:
        """The JSON object: every field the source had (all of them for a new record)."""
        return {
            name: thaw(getattr(self, name))
            for name in field_names(type(self))
            if name not in self.absent_keys
        }

    def __getitem__(self, key: str) -> Any:
        """Read access to the JSON form (``config["patch_size"]``), for reports and tests."""
        return self.to_json()[key]

    __iter__ = None  # not a mapping: iterating would call __getitem__ with 0, 1, ...


def _required(spec: dataclasses.Field) -> bool:
    return spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING


def record_decoder(cls: type[Record]) -> Decoder:
    """Decoder of a nested record field."""
    return lambda value, where: cls.from_json(value, where)


def records_decoder(cls: type[Record]) -> Decoder:
    """Decoder of a list of records (one per image channel, say)."""

    def decode(value: Any, where: str) -> tuple[Record, ...]:
        if not isinstance(value, list | tuple):
            raise InvalidInputError(f"{where}: must be a list")
        return tuple(cls.from_json(v, child(where, str(i))) for i, v in enumerate(value))

    return decode
