"""The ground floor: what every stage shares (errors, atomic writes, resources, the
workspace and run layout, checkpoint I/O, device resolution, the CPU denormal guard).

Nothing here imports another autoseg package.
"""
