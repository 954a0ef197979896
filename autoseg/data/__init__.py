"""Data layer: records, geometry, raw dataset layout, readers/writers, converters, checks."""
