"""Loading the raw tables: what `raw.<name>` needs to match its files, staged for the run's publish.

Hand-written because loading is special: files come from a directory the user chooses, as CSV
or Parquet, and a bad file must fail with a message naming the file, line and column while the
previous table stays in place (`create or replace table` is one atomic statement in DuckDB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ecommerce_assets.errors import RawLoadError
from ecommerce_assets.ingest.files import read_sql, source_files
from ecommerce_assets.project.relations import delta_name
from ecommerce_assets.project.sources import LOADED_AT, RawTable
from ecommerce_assets.run.duckdb.database import table_exists
from ecommerce_assets.run.duckdb.logs import create_load_log, loaded_files
from ecommerce_assets.run.duckdb.publish import Pending


@dataclass(frozen=True)
class LoadResult:
    mode: str  # 'replaced', 'appended' or 'unchanged'
    files: list[Path]  # the files read by this run
    pending: Pending | None = None  # what the run publishes (None: nothing changed)
    load_log_rows: list[list] = field(default_factory=list)  # rows the publish adds to the load log


def load(con: duckdb.DuckDBPyConnection, raw: RawTable, data_dir: Path, full_refresh: bool = False) -> LoadResult:
    """Stage what `raw.<name>` needs to match its files; `_loaded_at` is the run's timestamp.

    The cost follows what changed: files already loaded (same path, size and mtime) are not
    read again, new files in a folder are appended, and any other change reloads everything.
    Nothing published changes here: a reload is built as `raw.<name>__build`, new files go to
    `raw.<name>__delta` (and `__build` is then a view of the table and the delta), and the run's
    publish applies them and the load log together.
    """
    files = source_files(data_dir, raw)
    stamps = {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in files}
    create_load_log(con)
    loaded = {} if full_refresh or not table_exists(con, raw.table) else loaded_files(con, raw.name)
    append = bool(loaded) and all(stamps.get(f) == stamp for f, stamp in loaded.items())
    new = [p for p in files if str(p) not in loaded] if append else files
    if append and not new:
        return LoadResult("unchanged", [])
    pending = Pending(raw.table, "append" if append else "table")
    try:
        rows = read_sql(con, raw, new, LOADED_AT[0])
        if append:
            con.execute(f"create or replace table {delta_name(raw.table)} as {rows}")
            con.execute(
                f"create or replace view {pending.built} as "
                f"select * from {raw.table} union all select * from {delta_name(raw.table)}"
            )
        else:
            con.execute(f"create or replace table {pending.built} as {rows}")
    except duckdb.Error as e:
        # DuckDB's first paragraph names the line, the column and the value; the rest is generic advice.
        paragraphs = str(e).split("\n\n")
        where = (
            new[0]
            if len(new) == 1
            else next(
                (line.strip() for line in str(e).splitlines() if line.strip().startswith("file =")), new[0].parent
            )
        )
        raise RawLoadError(
            f"{where}: could not load into {raw.table} (the previous table is kept):\n{paragraphs[0]}"
        ) from e
    log_rows = [[raw.name, str(p), *stamps[str(p)]] for p in new]
    return LoadResult("appended" if append else "replaced", new, pending, log_rows)
