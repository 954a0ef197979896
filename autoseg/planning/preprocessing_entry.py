"""The bridge from a plans configuration to the preprocessing stage's spec.

A configuration carries ``spacing_mm``, ``normalization`` (one entry per channel) and
a ``preprocessing`` object (crop_to_nonzero, n4, ...); together they are exactly a
:class:`autoseg.plans.preprocessing.PreprocessingSpec`, whose ``data_id`` names the cache.
"""

from __future__ import annotations

from typing import Any

from autoseg.data.errors import InvalidInputError
from autoseg.plans.preprocessing import PreprocessingSpec


def spec_payload(config: dict[str, Any]) -> dict[str, Any]:
    """The PreprocessingSpec JSON of a configuration entry."""
    return {
        "spacing_mm": config["spacing_mm"],
        "normalization": config["normalization"],
        **config.get("preprocessing", {}),
    }


def preprocessing_spec(config: dict[str, Any]) -> PreprocessingSpec:
    """The preprocessing spec a configuration's cache is built with.

    Raises:
        InvalidInputError: the entry does not describe a valid spec.
    """
    try:
        return PreprocessingSpec.from_json(spec_payload(config))
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidInputError(f"plans: invalid preprocessing entry ({error})") from error


def data_id_for(config: dict[str, Any]) -> str:
    """Cache folder name of a configuration (configurations with one spec share it)."""
    return preprocessing_spec(config).data_id
