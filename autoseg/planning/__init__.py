"""Planning: dataset fingerprint, memory model, experiment planner, plans schema.

Public entry points: :func:`autoseg.planning.planner.plan_dataset` (what ``autoseg_plan``
runs), :func:`autoseg.planning.fingerprint.compute_fingerprint`,
:func:`autoseg.planning.planner.plan_from_fingerprint`,
:func:`autoseg.planning.memory.estimate_training_memory`,
:func:`autoseg.planning.plans.load_plans` and :func:`autoseg.planning.plans.apply_overrides`.
Import them from their modules: this package stays light so data workers do not load torch.
"""
