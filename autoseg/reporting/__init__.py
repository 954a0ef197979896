"""Reporting: one self-contained HTML page per dataset, and single-case overlay figures.

Public entry points (import them from their modules; matplotlib loads only when used):
:func:`autoseg.reporting.report.write_report` (what ``autoseg_report`` runs) and
:func:`autoseg.reporting.overlay.draw_overlay` (what ``autoseg_visualize`` runs).
Every figure is drawn off-screen on a :class:`matplotlib.figure.Figure` (Agg), so nothing
needs a display, and every image in the page is an inline ``data:image/png`` URI.
"""
