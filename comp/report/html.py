"""Self-contained HTML: every user string escaped, styles inline, no external resource."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; } tr.failed td { color: #a00; } tr.stale td { color: #888; }
img { max-width: 100%; display: block; margin: .8em 0; }
p.note { color: #666; } nav a { margin-right: 1em; } code { background: #f4f4f4; padding: 0 .2em; }
"""


@dataclass(frozen=True)
class Section:
    """One titled part of a page; `body` is HTML that the helpers below produced."""

    anchor: str
    title: str
    body: str


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
          row_classes: Iterable[str] | None = None) -> str:
    """A table of escaped cells; numbers are formatted and right-aligned."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    classes = iter(row_classes) if row_classes is not None else None
    lines = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{fmt(v)}</td>' if is_number(v)
            else f"<td>{escape(fmt(v))}</td>"
            for v in row
        )
        css = next(classes) if classes is not None else ""
        lines.append(f'<tr class="{escape(css)}">{cells}</tr>' if css else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def image(data_uri: str, alt: str) -> str:
    return f'<img src="{data_uri}" alt="{escape(alt)}">'


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def heading(text: str, level: int = 3) -> str:
    return f"<h{level}>{escape(text)}</h{level}>"


def page(title: str, subtitle: str, sections: list[Section]) -> str:
    nav = "".join(f'<a href="#{s.anchor}">{escape(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{s.anchor}"><h2>{escape(s.title)}</h2>{s.body}</section>' for s in sections
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        # An inline favicon: without one the browser asks for /favicon.ico and logs an error.
        '<link rel="icon" href="data:,">'
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"
        f"{note(subtitle)}<nav>{nav}</nav>{body}</body></html>\n"
    )
