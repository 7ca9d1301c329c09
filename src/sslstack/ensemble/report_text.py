"""Text in the report: HTML tables and escaping, scores, and labels matplotlib can draw.

A label is drawn in the first installed font that has its glyphs (DejaVu Sans, which matplotlib
ships, then Noto CJK and other wide fonts when the machine has them); a character none of them
has is never handed to matplotlib (that gives "Glyph missing" warnings and empty boxes): a
tick label becomes its class number (``#7``) and the HTML tables, which the browser draws with
its own fonts, give the full name. Long labels are shortened with an ellipsis.
"""

from __future__ import annotations

import functools
import html
from typing import Any

import numpy as np

# wide fonts tried after DejaVu Sans, when installed (matplotlib falls back glyph by glyph)
_FALLBACKS = (
    "Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK KR",
    "Source Han Sans", "Droid Sans Fallback", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
    "Arial Unicode MS", "Noto Sans", "Noto Sans Arabic", "Noto Sans Devanagari",
)  # fmt: skip
TICK_CHARS = 20  # a tick label longer than this is shortened


def e(v: Any) -> str:
    """``v`` as escaped HTML text."""
    return html.escape(str(v))


def fmt_score(v: Any) -> str:
    """A score as 4 decimals, "-" when missing or not finite."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    return f"{f:.4f}" if np.isfinite(f) else "-"


def html_table(header: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    """An HTML table; cells that are numbers are right-aligned."""
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(
            f"<td class=num>{c}</td>" if _is_num(c) else f"<td>{e(c)}</td>" for c in row
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _is_num(c: str) -> bool:
    try:
        float(c)
        return True
    except ValueError:
        return False


@functools.lru_cache(maxsize=1)
def font_families() -> tuple[str, ...]:
    """The fonts the report's figures use, in fallback order (installed ones only)."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return ("DejaVu Sans", *(f for f in _FALLBACKS if f in installed))


@functools.lru_cache(maxsize=1)
def _covered() -> frozenset[int]:
    """Code points some font of :func:`font_families` has a glyph for."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    points: set[int] = set()
    for family in font_families():
        try:
            path = font_manager.findfont(family, fallback_to_default=False)
            points |= set(FT2Font(path).get_charmap())
        except (OSError, RuntimeError, ValueError):
            continue
    return frozenset(points)


def drawable(text: str) -> bool:
    """Whether every character of ``text`` has a glyph in the report's fonts."""
    have = _covered()
    return all(ch.isspace() or ord(ch) in have for ch in text)


def safe_text(text: str) -> str:
    """``text`` with the characters no font can draw replaced by ``?`` (titles, legends)."""
    have = _covered()
    return "".join(ch if ch.isspace() or ord(ch) in have else "?" for ch in text)


def tick_labels(labels: list[str], width: int = TICK_CHARS) -> tuple[list[str], bool]:
    """Axis labels for classes: the label, shortened to ``width`` characters with an ellipsis,
    or ``#i`` when the fonts cannot draw it; and whether any was changed (then the figure's
    caption points to the per-class table, which has them in full)."""
    out, changed = [], False
    for i, lab in enumerate(labels):
        text = str(lab)
        if not drawable(text):
            text = f"#{i}"
        elif len(text) > width:
            text = text[: width - 1].rstrip() + "\u2026"
        changed |= text != str(lab)
        out.append(text)
    return out, changed
