"""The `@changed(...)` filter that lets a model rebuild only the keys a run's raw changes reach.

A model with `incremental_strategy: delete+insert` writes `@changed(<column>)` where its inputs
should be cut to what changed (`where @changed(order_id)`). In a full build the filter is `true`.
In an incremental build it keeps the keys in `CHANGED_KEYS`, and the run replaces the rows its
`replace_where` selects with what the filtered SQL returns. `@changed(expr, raw_table)` names the
raw table whose keys `expr` holds; alone, the column's name says it (`order_id` is raw_orders').

The key sets themselves are the run's (run/duckdb/keys.py).
"""

from __future__ import annotations

import re

from ecommerce_assets.errors import ChangedMacroError
from ecommerce_assets.project.relations import DELTA_SUFFIX
from ecommerce_assets.project.sources import RAW_TABLES

# Relations of the run, not of the warehouse: the `__delta` suffix has the next run drop what a
# dead run left (publish.clean_up), and the run drops them after its publish.
CHANGED_KEYS = f"raw._changed_keys{DELTA_SUFFIX}"
# The keys the `equals_full_rebuild` checks compare: the changed ones and a slice of customers.
VERIFY_KEYS = f"raw._verify_keys{DELTA_SUFFIX}"
KEY_TABLES = (CHANGED_KEYS, VERIFY_KEYS)

# Key column -> the raw table it is the key of (every raw table's first column).
KEY_SOURCES = {next(iter(t.columns)): t.name for t in RAW_TABLES}
_RAW = {t.name: t for t in RAW_TABLES}

# NULL is a key too (rows rejected for null_key): compared through a value no id takes.
_NULL_KEY = "-9223372036854775808"

_MACRO = re.compile(r"@changed\(\s*([^(),]+?)\s*(?:,\s*(\w+)\s*)?\)", re.IGNORECASE)


def expand(sql: str, keys: str | None) -> str:
    """`sql` with every `@changed(expr[, raw_table])` made `true` (keys None: a full build) or a
    test that `expr` is one of the keys of that raw table in the `keys` table."""

    def replace(match: re.Match) -> str:
        expr, source = match.group(1), match.group(2)
        source = source or KEY_SOURCES.get(expr.rsplit(".", 1)[-1].lower())
        if source not in _RAW:
            raise ChangedMacroError(
                f"@changed({match.group(1)}): name the raw table its keys come from, "
                f"@changed(expr, raw_table) with one of {', '.join(_RAW)}"
            )
        if keys is None:
            return "true"
        return (
            f"(coalesce({expr}, {_NULL_KEY}) in "
            f"(select coalesce(key, {_NULL_KEY}) from {keys} where source = '{source}'))"
        )

    return _MACRO.sub(replace, sql)


def uses_changed(sql: str) -> bool:
    return bool(_MACRO.search(sql))
