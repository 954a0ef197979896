"""Networks by name: ``register_network`` adds a builder, ``build_network`` calls it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from autoseg.core.errors import InvalidInputError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

B = TypeVar("B", bound=Callable[..., nn.Module])


def register_network(name: str) -> Callable[[B], B]:
    """Class/function decorator registering a network builder under ``name``."""

    def decorate(builder: B) -> B:
        if name in _REGISTRY and _REGISTRY[name] is not builder:
            raise ValueError(f"network name {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorate


def list_networks() -> list[str]:
    """Names accepted by ``build_network``, sorted."""
    return sorted(_REGISTRY)


def build_network(spec: dict[str, Any]) -> nn.Module:
    """Build the network a plans configuration describes.

    Args:
        spec: ``{"name": <registered name>, "kwargs": {...}}``, the ``network`` entry of a
            configuration in plans.json; kwargs always hold ``in_channels`` and
            ``num_classes``.

    Raises:
        InvalidInputError: unknown name (the message lists the known ones), a spec
            without ``name``, or kwargs the network rejects.
    """
    if not isinstance(spec, dict) or "name" not in spec:
        raise InvalidInputError(f"network spec needs a 'name' and 'kwargs', got {spec!r}")
    name = spec["name"]
    if name not in _REGISTRY:
        raise InvalidInputError(
            f"unknown network {name!r}; known networks: {', '.join(list_networks())}"
        )
    kwargs = dict(spec.get("kwargs", {}))
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as err:  # unexpected or missing keyword
        raise InvalidInputError(f"network {name!r}: {err}") from err
