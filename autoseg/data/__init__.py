"""Dataset layer: records, geometry, raw dataset layout, readers/writers, converters, checks.

The synthetic-data generator is its own package, :mod:`autoseg.synthetic`.
"""
