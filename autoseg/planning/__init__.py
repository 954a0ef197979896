"""Planning: dataset fingerprint, memory model, experiment planner, configurations.

Public entry points: :func:`autoseg.planning.planner.plan_dataset` (what ``autoseg_plan``
runs), :func:`autoseg.planning.fingerprint.compute_fingerprint`,
:func:`autoseg.planning.planner.plan_from_fingerprint`,
:func:`autoseg.planning.memory.estimate_training_memory`
and :func:`autoseg.planning.configurations.register_configuration` (the plans schema and
its reading, writing and overrides live in :mod:`autoseg.plans`).
Import them from their modules: this package stays light so data workers do not load torch.
"""
