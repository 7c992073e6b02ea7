"""Markdown cells and tables for the reports bench, the detector-crop bench and the model cards write."""

from __future__ import annotations

import math
from typing import Any


def cell(v: Any, spec: str = ".2f") -> str:
    """``v`` formatted with ``spec``; a missing or non-finite value is a dash."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, spec)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
