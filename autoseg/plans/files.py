"""plans.json on disk: validation, content hash, reading and writing.

Hand edits are allowed: loading recomputes the id from the content. A file planned before
a key existed loads with that key's default and is written back without it, so its id (and
the checkpoints that record it) stay valid; a key this schema does not know is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoseg.core.atomic import atomic_path, read_json
from autoseg.core.errors import InvalidInputError
from autoseg.plans.jsonutil import content_hash, round_floats
from autoseg.plans.preprocessing import (
    ChannelNormalization,
    PreprocessingOptions,
    PreprocessingSpec,
)
from autoseg.plans.record import records_decoder
from autoseg.plans.schema import MEMORY_SOURCES, SCHEMA_VERSION, Plans

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
    return Plans.from_json(body, "plans")


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
    return problems + _count_problems(config["training"], where) + _channel_problems(config, where)


def _channel_problems(config: dict[str, Any], where: str) -> list[str]:
    """The network must take the channels the cache holds (the spec's
    ``network_channels``: the image's, doubled by contralateral copies), times the slices
    of a 2D stack."""
    in_channels = config["network"].get("kwargs", {}).get("in_channels")
    if not isinstance(in_channels, int) or isinstance(in_channels, bool):
        return []
    try:
        spec = _entry_spec(config, where)
    except InvalidInputError:
        return []  # a broken preprocessing entry is reported when the plans are read
    stack = config.get("slice_context") or {}
    slices = int(stack.get("slices", 1)) if len(config["patch_size"]) == 2 else 1
    wanted = spec.network_channels * slices
    if in_channels == wanted or (not spec.contralateral and in_channels % spec.num_channels == 0):
        return []
    copies = " and their contralateral copies" if spec.contralateral else ""
    return [
        f"{where}: network.kwargs.in_channels is {in_channels}, but the cache holds "
        f"{spec.num_channels} image channel(s){copies}: set it to {wanted}"
    ]


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
    return problems + _postprocessing_problems(payload.get("postprocessing"), str(where))


def _postprocessing_problems(spec: Any, where: str) -> list[str]:
    """The plans' default postprocessing is a size rule only: the probability rules
    depend on a trained model, so they are find_best's to choose."""
    if spec is None:
        return []
    if not isinstance(spec, dict):
        return [f"{where}: 'postprocessing' must be a JSON object"]
    problems = [
        f"{where}: postprocessing.{key} is not a plans default (known: min_lesion_ml)"
        for key in sorted(set(spec) - {"min_lesion_ml"})
    ]
    value = spec.get("min_lesion_ml", 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        problems.append(f"{where}: postprocessing.min_lesion_ml must be a number >= 0")
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
    return Plans.from_json(payload, str(path))


def write_plans(path: str | Path, plans: Plans) -> None:
    """Write plans.json atomically, byte-identical for identical plans."""
    with atomic_path(path) as temp:
        temp.write_text(plans.text())


def _refresh_data_ids(payload: dict[str, Any]) -> None:
    """Overrides of spacing or normalisation must land in another cache folder."""
    for name, config in payload["configurations"].items():
        config["data_id"] = _entry_spec(config, f"plans: configurations.{name}").data_id


def _entry_spec(config: dict[str, Any], where: str) -> PreprocessingSpec:
    """The preprocessing spec of a configuration entry not yet validated as a whole."""
    try:
        normalization = records_decoder(ChannelNormalization)(config["normalization"], where)
        options = PreprocessingOptions.from_json(config.get("preprocessing", {}), where)
        return PreprocessingSpec.from_parts(config["spacing_mm"], normalization, options)
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidInputError(f"plans: invalid preprocessing entry ({error})") from error
