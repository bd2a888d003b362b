"""A self-contained HTML report: figures embedded as base64 PNG, tables, timings.

One file that opens anywhere (no server, no external assets), written atomically.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from meddinov3.io import atomic_write_text

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { display: inline-block; margin: .5rem 1rem .5rem 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #555; max-width: 520px; }
.note { color: #555; font-size: .9rem; }
"""


def figure_html(png: str | Path, caption: str, width: int | None = None) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    style = f' style="width:{width}px"' if width else ""
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}"{style}>'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def table_html(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:.2f}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def paragraph_html(text: str, note: bool = False) -> str:
    return f'<p{" class=note" if note else ""}>{html.escape(text)}</p>'


@dataclass
class Report:
    title: str
    sections: list[tuple[str, list[str]]] = field(default_factory=list)

    def add(self, heading: str, *fragments: str) -> None:
        self.sections.append((heading, list(fragments)))

    def to_html(self) -> str:
        parts = [f"<h1>{html.escape(self.title)}</h1>"]
        for heading, fragments in self.sections:
            parts.append(f"<section><h2>{html.escape(heading)}</h2>{''.join(fragments)}</section>")
        return (
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
        )

    def write(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_html())
