"""The plans record: one object per plans.json (DESIGN §10, §11).

``plans_id`` is a hash of everything else in the file, so a checkpoint that records it can
never be used with other plans (see :mod:`autoseg.plans.files`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from autoseg.core.errors import InvalidInputError
from autoseg.plans.configuration import Configuration
from autoseg.plans.jsonutil import canonical_json
from autoseg.plans.record import Decoder, Record, child

SCHEMA_VERSION = 1
MEMORY_SOURCES = ("detected", "flag", "default")


def _configurations(value: Any, where: str) -> dict[str, Configuration]:
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where}: must be a JSON object")
    return {
        name: Configuration.from_json(entry, child(where, name)) for name, entry in value.items()
    }


@dataclass(frozen=True)
class Plans(Record):
    """A validated plans.json.

    Attributes:
        schema_version: the schema this file follows (:data:`SCHEMA_VERSION`).
        plans_id: content hash of the rest of the file.
        dataset: the dataset's name.
        gpu_memory_gb, gpu_memory_source, device: the budget planned for and where it came
            from (``detected``, ``flag``, ``default``).
        recommended_configuration: what the data suggests training first.
        configurations: ``{name: entry}``.
        fingerprint_id: content hash of the fingerprint planned from.
        cpu_budget: the compute cap of a CPU plan (None on an accelerator).
        overrides: the ``--set`` assignments applied, in order.
        postprocessing: what every prediction applies unless ``--no-postprocessing``
            (``{"min_lesion_ml": v}``, read off the training labels; None in plans made
            before it existed). find_best's choice is searched and applied on top of it.
    """

    schema_version: int
    plans_id: str
    dataset: str
    gpu_memory_gb: float
    gpu_memory_source: str
    device: str
    recommended_configuration: str
    configurations: dict[str, Configuration]
    fingerprint_id: str | None = None
    cpu_budget: dict[str, Any] | None = None
    overrides: tuple[str, ...] = ()
    postprocessing: dict[str, Any] | None = None

    DECODERS: ClassVar[dict[str, Decoder]] = {"configurations": _configurations}

    def configuration(self, name: str) -> Configuration:
        """One configuration's entry; unknown names fail with the list of known ones."""
        if name not in self.configurations:
            known = ", ".join(sorted(self.configurations))
            raise InvalidInputError(f"plans: no configuration '{name}' (known: {known})")
        return self.configurations[name]

    @property
    def payload(self) -> dict[str, Any]:
        """The JSON object (a fresh copy)."""
        return self.to_json()

    def text(self) -> str:
        """The exact bytes written to plans.json."""
        return canonical_json(self.to_json())
