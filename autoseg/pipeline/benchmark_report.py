"""The benchmark report on screen: one table of the runs, then the prediction times.

:func:`~autoseg.pipeline.benchmark.run_benchmark` writes the JSON; this formats it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell: the first left-aligned, the rest right."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        rest = (str(c).rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([str(cells[0]).ljust(widths[0]), *rest]).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _run_row(run: dict[str, Any]) -> list[str]:
    if run["status"] != "ran":
        return [run["name"], run["status"], "", "", "", "", ""]
    return [
        run["name"], f"{run['s_per_iteration_real']:.4f}",
        f"{run['s_per_iteration_fixed_batch']:.4f}", f"{run['loader_wait_share']:.0%}",
        f"{run['device_busy_share']:.0%}", f"{run['peak_memory_gb']:.2f}",
        f"{run['memory_estimate_gb']:.2f}",
    ]  # fmt: skip


def format_report(report: dict[str, Any]) -> str:
    """The report as a table on screen (every run, then prediction)."""
    headers = ["run", "s/iter", "s/iter fixed", "loader wait", "busy", "peak GB", "plan GB"]
    lines = [
        f"{report['dataset']} {report['configuration']} on {report['device']} "
        f"({report['device_name']}), patch {report['patch_size']} batch {report['batch_size']}, "
        f"median of {report['iterations']} steps after {report['warmup']} warm-up, "
        f"augmentation on the {report['augmentation_on']}",
        format_table(headers, [_run_row(r) for r in report["runs"]]),
        f"peak memory: {report['memory_source']}",
    ]
    if "prediction" in report:
        p = report["prediction"]
        lines.append(
            f"prediction s/case ({len(p['cases'])} cases): "
            f"{p['no_tta']['median_s_per_case']:.2f} without TTA, "
            f"{p['tta']['median_s_per_case']:.2f} with TTA"
        )
    return "\n".join(lines)
