"""An analyst's own sections (findings, recommendations) from a small, safe Markdown subset.

Headings (``#`` to ``###``), paragraphs, bulleted and numbered lists, ``*emphasis*``,
``**strong**`` and ```code```. Everything is HTML-escaped first, so a note cannot inject
markup or scripts; anything else is shown as the text it is.
"""

from __future__ import annotations

import re
from html import escape

__all__ = ["render_notes"]

_INLINE = (
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])"), r"<em>\1</em>"),
    (re.compile(r"(?<!\w)_([^_\s][^_]*)_(?!\w)"), r"<em>\1</em>"),
)
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBER = re.compile(r"^\s*\d+[.)]\s+(.*)$")
_HEADING = re.compile(r"^(#{1,3})\s+(.*?)\s*#*\s*$")


def _inline(text: str) -> str:
    out = escape(text, quote=True)
    for pattern, repl in _INLINE:
        out = pattern.sub(repl, out)
    return out


def render_notes(markdown: str, heading_level: int = 3) -> str:
    """Safe HTML for ``markdown``; ``#`` becomes ``<h{heading_level}>``, ``##`` the level below."""
    html: list[str] = []
    para: list[str] = []
    items: list[str] = []
    kind = ""

    def flush() -> None:
        nonlocal kind
        if para:
            html.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()
        if items:
            html.append(f"<{kind}>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + f"</{kind}>")
            items.clear()
        kind = ""

    for line in markdown.splitlines():
        h, b, n = _HEADING.match(line), _BULLET.match(line), _NUMBER.match(line)
        if not line.strip():
            flush()
        elif h:
            flush()
            level = min(heading_level + len(h.group(1)) - 1, 6)
            html.append(f"<h{level}>{_inline(h.group(2))}</h{level}>")
        elif b or n:
            want = "ul" if b else "ol"
            if para or (items and kind != want):
                flush()
            kind = want
            found = b or n
            assert found is not None
            items.append(found.group(1))
        elif items and line.startswith((" ", "\t")):
            items[-1] += " " + line.strip()
        else:
            if items:
                flush()
            para.append(line.strip())
    flush()
    return "\n".join(html)
