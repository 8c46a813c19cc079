"""Markdown tables for the UI: model previews, failing check rows, analysis results."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from decimal import Decimal


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence], total: int | None = None) -> str:
    if not columns:
        return "_no columns_"
    lines = [
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
        *("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows),
    ]
    if total is not None and total > len(rows):
        lines.append(f"\n_{len(rows)} of {total:,} rows_")
    elif not rows:
        lines.append("\n_no rows_")
    return "\n".join(lines)


MARKDOWN_SPECIALS = re.compile(r"([\\`*_<>\[\]])")


def escape_markdown(text: str) -> str:
    """`text` shown as written where the UI renders markdown: `<price column>` is a placeholder,
    not an HTML tag for the renderer to swallow, and `null_<reference>_id` is no emphasis."""
    return MARKDOWN_SPECIALS.sub(r"\\\1", text)


def _cell(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (Decimal, dt.date)):
        return str(value)
    return str(value).replace("|", "\\|").replace("\n", " ")
