"""The plans schema: frozen records for plans.json, its defaults, reading and writing.

:class:`~autoseg.plans.schema.Plans` holds one
:class:`~autoseg.plans.configuration.Configuration` per configuration, whose typed parts
(:class:`NetworkSpec`, :class:`TrainingSchedule`, :class:`Augmentation`,
:class:`InferenceWindow`, :class:`PreprocessingOptions`) declare every default once.
:func:`load_plans` / :func:`write_plans` read and write the file byte for byte;
:func:`apply_overrides` applies ``--set`` assignments. No torch here: data workers and the
planner import this package.
"""

from autoseg.plans.configuration import (
    Augmentation,
    Configuration,
    InferenceWindow,
    NetworkSpec,
    SliceContext,
    TrainingSchedule,
    augmentation_defaults,
)
from autoseg.plans.files import finalize, load_plans, write_plans
from autoseg.plans.overrides import apply_overrides
from autoseg.plans.preprocessing import (
    ChannelNormalization,
    PreprocessingOptions,
    PreprocessingSpec,
)
from autoseg.plans.schema import SCHEMA_VERSION, Plans

__all__ = [
    "SCHEMA_VERSION",
    "Augmentation",
    "ChannelNormalization",
    "Configuration",
    "InferenceWindow",
    "NetworkSpec",
    "Plans",
    "PreprocessingOptions",
    "PreprocessingSpec",
    "SliceContext",
    "TrainingSchedule",
    "apply_overrides",
    "augmentation_defaults",
    "finalize",
    "load_plans",
    "write_plans",
]
