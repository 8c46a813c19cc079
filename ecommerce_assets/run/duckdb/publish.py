"""Write-audit-publish: a run builds under temporary names, checks there, then publishes in one
DuckDB transaction, so the warehouse is always exactly one run's result.

A model `marts.x` is built as `marts.x__build` (DuckDB renames a table within its schema, not
across schemas) and every statement of the run reads what it already built through
`models.retarget`. Publishing renames tables (no copy), recreates views with their own SQL, and
appends a raw table's new files from `raw.<name>__delta`. A run that dies before the commit leaves
only `__build`/`__delta` relations, which the next run drops before it starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ecommerce_assets.project.relations import BUILD_SUFFIX, DELTA_SUFFIX, build_name, delta_name
from ecommerce_assets.run.duckdb.logs import LOAD_LOG, PUBLISH_LOG
from ecommerce_assets.run.outputs import drop_staged


@dataclass(frozen=True)
class Pending:
    """One relation built by the run and not yet published.

    kind: 'table' (renamed into place), 'view' (recreated from `view_sql`), 'append' (the rows
    of the delta table are inserted into the published table; the build name is a view of both),
    or 'upsert' (the published rows `where` selects are replaced by the delta's; the build name is
    a view of the result). `version`: the code the relation was built with (see the publish log).
    """

    table: str
    kind: str
    view_sql: str = ""
    where: str = ""
    version: str = ""
    inputs: str = ""  # the run's variables the relation was built from, e.g. its analysis date
    # Built by the model's own SQL alone (no previous rows merged or maintained): equal to a full
    # rebuild by construction.
    from_scratch: bool = False

    @property
    def built(self) -> str:
        return build_name(self.table)


@dataclass
class Publication:
    """Everything a run will publish: relations, load-log changes and files."""

    relations: dict[str, Pending] = field(default_factory=dict)  # node name -> pending relation
    # Load-log rows to insert, and the raw tables whose previous entries go (replaced tables).
    load_log_rows: list[list] = field(default_factory=list)
    load_log_cleared: set[str] = field(default_factory=set)
    files: dict[str, list[tuple[Path, Path]]] = field(default_factory=dict)  # node -> (staged, final)


def prepare_statements(con: duckdb.DuckDBPyConnection) -> list[str]:
    """DROPs of what a dead run left: every `__build`/`__delta` relation."""
    rows = con.execute(
        """
        select 'view', schema_name, view_name from duckdb_views() where not internal
        union all
        select 'table', schema_name, table_name from duckdb_tables()
        """
    ).fetchall()
    return [
        f"drop {kind} if exists {schema}.{name}"
        for kind, schema, name in rows
        if name.endswith((BUILD_SUFFIX, DELTA_SUFFIX))
    ]


def clean_up(con: duckdb.DuckDBPyConnection, output_dir: Path) -> list[str]:
    """Drops what a run that died left behind (relations and staged files); returns what it dropped."""
    dropped = []
    for statement in prepare_statements(con):
        con.execute(statement)
        dropped.append(statement.rsplit(" ", 1)[1])
    return dropped + drop_staged(output_dir)


def publish(
    con: duckdb.DuckDBPyConnection,
    publication: Publication,
    names: Sequence[str],
    run_id: str,
    rows: Mapping[str, int],
) -> None:
    """One transaction: the `names` nodes' relations in order, their load-log changes and the publish
    log. Then the staged files. Either all relations are published or none."""
    kinds = dict(
        con.execute(
            "select schema_name || '.' || table_name, 'table' from duckdb_tables() union all "
            "select schema_name || '.' || view_name, 'view' from duckdb_views() where not internal"
        ).fetchall()
    )
    names = [n for n in names if n in publication.relations or n in publication.files]
    published = [publication.relations[n] for n in names if n in publication.relations]
    raw_tables = {p.table.split(".", 1)[1] for p in published if p.table.startswith("raw.")}
    con.execute("begin transaction")
    try:
        for pending in published:
            for statement in publish_statements(pending, kinds.get(pending.table)):
                con.execute(statement)
        for table in sorted(publication.load_log_cleared & raw_tables):
            con.execute(f"delete from {LOAD_LOG} where table_name = ?", [table])
        log_rows = [r for r in publication.load_log_rows if r[0] in raw_tables]
        if log_rows:
            con.executemany(f"insert into {LOAD_LOG} values (?, ?, ?, ?, getvariable('run_started_at'))", log_rows)
        publish_rows = [
            [run_id, p.table, rows.get(n), p.version, p.inputs]
            for n in names
            if (p := publication.relations.get(n)) is not None
        ]
        if publish_rows:
            con.executemany(
                f"insert into {PUBLISH_LOG} (run_id, table_name, row_count, published_at, code_version, inputs)"
                " values (?, ?, ?, getvariable('run_started_at'), ?, ?)",
                publish_rows,
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    for name, files in publication.files.items():
        for staged, final in files:
            if name in names:
                os.replace(staged, final)
            else:
                staged.unlink(missing_ok=True)


def publish_statements(pending: Pending, existing: str | None) -> list[str]:
    """What publishing one relation takes, inside the run's publish transaction."""
    table, built = pending.table, pending.built
    drop = [f"drop {existing} {table}"] if existing else []
    if pending.kind == "table":
        return [*drop, f"alter table {built} rename to {table.split('.', 1)[1]}"]
    if pending.kind == "view":
        return [*drop, f"create view {table} as\n{pending.view_sql}", f"drop view {built}"]
    if pending.kind == "append":
        delta = delta_name(table)
        return [f"insert into {table} select * from {delta}", f"drop view {built}", f"drop table {delta}"]
    if pending.kind == "upsert":
        # The delta stays until the run's clean_up: the readers' copy applies it too.
        delta = delta_name(table)
        return [
            f"delete from {table} where {pending.where}",
            f"insert into {table} select * from {delta}",
            f"drop view {built}",
        ]
    raise ValueError(f"{table}: unknown publish kind {pending.kind!r}")
