"""Byte-stable JSON for planning files: rounded floats, sorted keys, content hashes."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any


def round_float(value: float, significant: int) -> float:
    """Round to ``significant`` significant digits (so float noise never changes a hash)."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    digits = significant - math.floor(math.log10(abs(value))) - 1
    return float(round(value, digits))


def round_floats(payload: Any, significant: int = 6) -> Any:
    """A copy of a JSON-like structure with every float rounded (tuples become lists)."""
    if isinstance(payload, bool):
        return payload
    if isinstance(payload, float):
        return round_float(payload, significant)
    if isinstance(payload, dict):
        return {str(k): round_floats(v, significant) for k, v in payload.items()}
    if isinstance(payload, list | tuple):
        return [round_floats(v, significant) for v in payload]
    return payload


def canonical_json(payload: Any) -> str:
    """Sorted-key, indented JSON text with a final newline (what is written to disk)."""
    return json.dumps(payload, indent=2, sort_keys=True) + "\n"


def content_hash(payload: Any, length: int = 16) -> str:
    """Hex SHA-256 prefix of the compact canonical JSON of ``payload``."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]
