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


# What the UI's markdown would not show as written: an HTML-like `<placeholder>`, a bracket or
# backtick, and an emphasis mark that is not inside a word (`fct_customer_metrics` is left alone,
# because the catalog shows descriptions as plain text too, where an escape would show).
MARKDOWN_SPECIALS = re.compile(r"([\\`<>\[\]])|(?<![A-Za-z0-9])[_*]|[_*](?![A-Za-z0-9])")


def escape_markdown(text: str) -> str:
    """`text` shown as written where the UI renders markdown: `<price column>` is a placeholder,
    not an HTML tag for the renderer to swallow, and `null_<reference>_id` is no emphasis."""
    return MARKDOWN_SPECIALS.sub(lambda m: "\\" + m.group(0), text)


def _cell(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (Decimal, dt.date)):
        return str(value)
    return str(value).replace("|", "\\|").replace("\n", " ")
