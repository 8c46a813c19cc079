"""`ecommerce-assets diff --against PATH`: how a build's tables differ from another warehouse's
(SQLMesh's table_diff, dbt's audit_helper): schema changes, rows only on one side, rows changed by
key, the share of equal values per column and a few changed rows.

Each table is compared in one statement: a full join of the two sides on the model's key (its
`unique_key`, else the column its `unique` check guards), counting per column the matched rows
whose values are equal. A table without a key is compared as whole rows (`except all`). The
columns that stamp a run (`models.RUN_TIME_COLUMNS`) differ between any two builds: not compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb

from ecommerce_assets.markdown import markdown_table
from ecommerce_assets.project.models import RUN_TIME_COLUMNS, Model
from ecommerce_assets.review.against import OTHER
from ecommerce_assets.run.duckdb.catalog import describe
from ecommerce_assets.run.duckdb.database import quote_identifier

SAMPLE_ROWS = 3


def key_of(model: Model) -> str | None:
    """The column that identifies a row: the one a `unique` check guards, else a merge model's key (a
    delete+insert model's unique_key names the rows a change replaces, many per key)."""
    unique = next((c.column for c in model.checks if c.kind == "unique"), None)
    return unique or (model.unique_key if model.merges else None)


@dataclass
class TableDiff:
    table: str
    key: str | None
    missing_here: bool = False  # only in the other warehouse
    missing_there: bool = False  # only in this build
    added: list[str] = field(default_factory=list)  # columns only here
    removed: list[str] = field(default_factory=list)  # columns only there
    retyped: list[tuple[str, str, str]] = field(default_factory=list)  # column, type there, type here
    rows_here: int = 0
    rows_there: int = 0
    only_here: int = 0
    only_there: int = 0
    changed: int = 0
    matched: int = 0
    equal_share: dict[str, float] = field(default_factory=dict)  # column -> share of matched rows equal
    sample: list[tuple] = field(default_factory=list)  # key, then "column: there -> here" of changed rows

    @property
    def differs(self) -> bool:
        return bool(self.missing_here or self.missing_there or self.added or self.removed or self.retyped) or bool(
            self.only_here or self.only_there or self.changed
        )


def diff_tables(con: duckdb.DuckDBPyConnection, models: Sequence[Model]) -> list[TableDiff]:
    """Compares each model's table in `con` with the same table in the database attached as `against`."""
    return [_diff(con, m) for m in models]


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str] | None:
    try:
        return dict(describe(con, relation))
    except duckdb.CatalogException:
        return None


def _diff(con: duckdb.DuckDBPyConnection, model: Model) -> TableDiff:
    here, there = model.table, f"{OTHER}.{model.table}"
    result = TableDiff(model.table, key_of(model))
    ours, theirs = _columns(con, here), _columns(con, there)
    if ours is None or theirs is None:
        result.missing_here, result.missing_there = ours is None, theirs is None
        return result
    result.added = [c for c in ours if c not in theirs]
    result.removed = [c for c in theirs if c not in ours]
    result.retyped = [(c, theirs[c], ours[c]) for c in ours if c in theirs and theirs[c] != ours[c]]
    common = [c for c in ours if c in theirs and c not in RUN_TIME_COLUMNS]
    result.rows_here, result.rows_there = (
        con.execute(f"select count(*) from {t}").fetchone()[0] for t in (here, there)
    )
    key = result.key if result.key in common else None
    result.key = key
    if key is None:
        columns = ", ".join(map(quote_identifier, common))
        for side, (a, b) in (("only_here", (here, there)), ("only_there", (there, here))):
            count = f"select count(*) from (select {columns} from {a} except all select {columns} from {b})"
            setattr(result, side, con.execute(count).fetchone()[0])
        return result
    k = quote_identifier(key)
    compared = [c for c in common if c != key]
    equal = {c: f"h.{quote_identifier(c)} is not distinct from t.{quote_identifier(c)}" for c in compared}
    all_equal = " and ".join(equal.values()) or "true"
    row = con.execute(
        f"""
        select
            count(*) filter (where t.{k} is null) as only_here,
            count(*) filter (where h.{k} is null) as only_there,
            count(*) filter (where h.{k} is not null and t.{k} is not null) as matched,
            count(*) filter (where h.{k} is not null and t.{k} is not null and not ({all_equal})) as changed
            {"".join(f", count(*) filter (where h.{k} is not null and t.{k} is not null and {e})" for e in equal.values())}
        from {here} as h full join {there} as t on h.{k} = t.{k}
        """
    ).fetchone()
    result.only_here, result.only_there, result.matched, result.changed = row[:4]
    result.equal_share = {
        c: (n / result.matched if result.matched else 1.0) for c, n in zip(compared, row[4:], strict=True)
    }
    differing = [c for c in compared if result.equal_share[c] < 1.0]
    if result.changed and differing:
        shown = ", ".join(
            f"case when {equal[c]} then null else concat(t.{quote_identifier(c)}, ' -> ', h.{quote_identifier(c)}) end"
            for c in differing
        )
        rows = con.execute(
            f"select h.{k}, {shown} from {here} as h join {there} as t on h.{k} = t.{k}"
            f" where not ({all_equal}) order by h.{k} limit {SAMPLE_ROWS}"
        ).fetchall()
        result.sample = [
            (row[0], *(f"{c}: {v}" for c, v in zip(differing, row[1:], strict=True) if v is not None)) for row in rows
        ]
    return result


def _summary(d: TableDiff) -> str:
    if d.missing_there:
        return "new table (not in the other warehouse)"
    if d.missing_here:
        return "not built here (only in the other warehouse)"
    if not d.differs:
        return f"equal ({d.rows_here:,} rows)"
    parts = [f"{d.rows_there:,} -> {d.rows_here:,} rows"]
    if d.key:
        parts.append(f"{d.only_here:,} only here, {d.only_there:,} only there, {d.changed:,} changed by {d.key}")
    else:
        parts.append(f"no key: {d.only_here:,} rows only here, {d.only_there:,} only there")
    return "; ".join(parts)


def _schema_changes(d: TableDiff) -> list[str]:
    return (
        [f"column added: {c}" for c in d.added]
        + [f"column removed: {c}" for c in d.removed]
        + [f"column retyped: {c} {a} -> {b}" for c, a, b in d.retyped]
    )


def _unequal_columns(d: TableDiff) -> list[tuple[str, float]]:
    return [(c, share) for c, share in d.equal_share.items() if share < 1.0]


def as_text(diffs: Sequence[TableDiff]) -> str:
    lines = []
    for d in diffs:
        lines.append(f"{d.table}: {_summary(d)}")
        lines += [f"    {change}" for change in _schema_changes(d)]
        lines += [f"    {c}: {share:.2%} of matched rows equal" for c, share in _unequal_columns(d)]
        lines += ["    e.g. " + ", ".join(map(str, row)) for row in d.sample]
    changed = sum(d.differs for d in diffs)
    lines.append(f"{len(diffs)} tables compared, {changed} differ")
    return "\n".join(lines) + "\n"


def as_markdown(diffs: Sequence[TableDiff]) -> str:
    rows = [
        [
            f"`{d.table}`",
            _summary(d),
            "<br>".join(_schema_changes(d)) or "-",
            "<br>".join(f"`{c}` {share:.2%}" for c, share in _unequal_columns(d)) or "-",
        ]
        for d in diffs
    ]
    changed = sum(d.differs for d in diffs)
    header = f"### Table diff: {len(diffs)} tables compared, {changed} differ\n\n"
    return (
        header + markdown_table(["table", "rows", "schema", "columns with changed values (share equal)"], rows) + "\n"
    )
