"""HTML building blocks of the report: escaped text, tables, figures, the page shell.

The page is static: inline CSS, no scripts, no external links or fonts, images only as
``data:`` URIs, so it opens the same from an e-mail attachment as from a web server.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NOT_AVAILABLE = "not available yet"

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0;
       color: #1d2330; background: #f6f7f9; line-height: 1.45; }
header { background: #1f3a5f; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 26px; }
header p { margin: 0; opacity: 0.85; font-size: 14px; }
main { padding: 8px 32px 48px 32px; max-width: 1400px; }
section { background: #fff; border: 1px solid #dde1e7; border-radius: 6px;
          padding: 12px 20px 16px 20px; margin: 18px 0; }
h2 { font-size: 20px; margin: 6px 0 10px 0; color: #1f3a5f; }
h3 { font-size: 16px; margin: 16px 0 6px 0; }
nav ol { margin: 6px 0; columns: 2; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #d4d8de; padding: 3px 8px; text-align: right; }
th { background: #eef1f5; }
td:first-child, th:first-child { text-align: left; }
tr.summary td { font-weight: bold; background: #f3f6fa; }
tr.recommended td { background: #eaf6ea; }
.na { color: #8a8f98; font-style: italic; }
.note { color: #555c66; font-size: 13px; }
.bad { color: #b3261e; font-weight: bold; }
figure { margin: 8px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e2e5ea; }
.case { border-top: 1px solid #e2e5ea; padding-top: 6px; margin-top: 10px; }
"""


def esc(value: Any) -> str:
    """Text made safe for HTML."""
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell's text: numbers rounded, None/NaN as ``n/a``, lists as ``a x b x c``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, (list, tuple)):
        return " x ".join(fmt(v, digits) for v in value)
    return str(value)


def not_available(what: str) -> str:
    """The placeholder for an input an earlier step has not written yet."""
    return f'<p class="na">{esc(what)}: {NOT_AVAILABLE}.</p>'


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    row_classes: Sequence[str] | None = None,
) -> str:
    """An HTML table; cells go through :func:`fmt` and are escaped.

    Args:
        headers: column titles.
        rows: cell values, one sequence per row.
        row_classes: optional CSS class per row (``summary``, ``recommended``).
    """
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        css = row_classes[index] if row_classes else ""
        cells = "".join(f"<td>{esc(fmt(cell))}</td>" for cell in row)
        body.append(f'<tr class="{esc(css)}">{cells}</tr>' if css else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def image(uri: str, alt: str, caption: str = "") -> str:
    """A figure from a ``data:`` URI (the only kind of image the report uses)."""
    if not uri.startswith("data:image/"):
        raise ValueError(f"report images must be inline data URIs, got {uri[:40]!r}")
    text = f"<figcaption class='note'>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{esc(alt)}">{text}</figure>'


@dataclass(frozen=True)
class Section:
    """One report section: anchor id, title for the contents list, and its HTML body."""

    anchor: str
    title: str
    body: str


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole document: header, table of contents, then the sections in order."""
    contents = "".join(f'<li><a href="#{esc(s.anchor)}">{esc(s.title)}</a></li>' for s in sections)
    parts = [
        f'<section id="{esc(s.anchor)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><main>"
        f"<section id='contents'><h2>Contents</h2><nav><ol>{contents}</ol></nav></section>"
        f"{''.join(parts)}</main></body></html>\n"
    )
