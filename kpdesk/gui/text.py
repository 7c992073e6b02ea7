"""Fitting messages into little room without cutting off their end, which is where a
message says what to do ("...; re-stamp it: kpdesk models --restamp NAME")."""

from __future__ import annotations

import textwrap

ELLIPSIS = "…"


def elide_middle(text: str, max_chars: int) -> str:
    """``text`` on one line, at most ``max_chars`` long: the middle replaced by an ellipsis,
    so its start (what failed) and its end (the fix) both stay."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    if max_chars <= 1:
        return ELLIPSIS[:max_chars]
    head = max_chars // 2
    tail = max_chars - 1 - head
    return text[:head] + ELLIPSIS + (text[-tail:] if tail else "")


def wrap_lines(text: str, width: int, max_lines: int) -> list[str]:
    """``text`` wrapped to lines of at most ``width`` characters; when that takes more than
    ``max_lines``, the middle of the text is elided first so the last line keeps the end."""
    text = " ".join(text.split())
    budget = width * max_lines
    while True:
        lines = textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [""]
        if len(lines) <= max_lines:
            return lines
        budget -= max(4, width // 4)  # wrapping wastes line ends: shrink until it fits
        text = elide_middle(text, max(budget, 1))
