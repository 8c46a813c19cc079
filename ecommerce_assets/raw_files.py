"""Reading the raw export files: which files a table has, and the SQL that reads them typed.

The validation of what users deliver lives here (headers, formats); raw.py decides where the
rows go and keeps the load log.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    from ecommerce_assets.raw import RawTable


class RawLoadError(RuntimeError):
    pass


def source_files(data_dir: Path, raw: RawTable) -> list[Path]:
    """`raw_x.csv`, `raw_x.parquet`, or a folder `raw_x/` of such files (e.g. one per day)."""
    folder = data_dir / raw.name
    candidates = [p for p in (data_dir / f"{raw.name}.csv", data_dir / f"{raw.name}.parquet", folder) if p.exists()]
    if not candidates:
        raise RawLoadError(
            f"{raw.table}: no {raw.name}.csv, {raw.name}.parquet or {raw.name}/ in {data_dir} "
            "(set ECOMMERCE_DATA_DIR or the run config data_dir)"
        )
    if len(candidates) > 1:
        raise RawLoadError(f"{raw.table}: {' and '.join(p.name for p in candidates)} are all in {data_dir}; keep one")
    if candidates[0] != folder:
        return candidates
    files = sorted(folder.glob("*.csv")) + sorted(folder.glob("*.parquet"))
    if not files or {p.suffix for p in files} == {".csv", ".parquet"}:
        raise RawLoadError(f"{folder}: needs .csv or .parquet files, of one format")
    return files


def read_sql(con: duckdb.DuckDBPyConnection, raw: RawTable, files: list[Path], loaded_at: str) -> str:
    """`select ... from <reader>`: the declared columns typed, then `loaded_at` (the run's start)."""
    return f"select {_select(con, raw, files)}, getvariable('run_started_at') as {loaded_at} from {_reader(raw, files)}"


def _reader(raw: RawTable, files: list[Path]) -> str:
    paths = "[" + ", ".join(f"'{_quote(p)}'" for p in files) + "]"
    if files[0].suffix == ".parquet":
        return f"read_parquet({paths})"
    for path in files:
        _check_header(path, raw, _csv_header(path))
    columns = ", ".join(f"'{c}': '{t}'" for c, t in raw.columns.items())
    return (
        f"read_csv({paths}, header = true, auto_detect = false, delim = ',', "
        f"quote = '\"', escape = '\"', dateformat = '%Y-%m-%d', columns = {{{columns}}})"
    )


def _select(con: duckdb.DuckDBPyConnection, raw: RawTable, files: list[Path]) -> str:
    if files[0].suffix == ".csv":
        return "*"  # read_csv already types the columns
    for path in files:
        found = [r[0] for r in con.execute(f"describe select * from read_parquet('{_quote(path)}')").fetchall()]
        missing = [c for c in raw.columns if c not in found]
        if missing:
            raise RawLoadError(f"{path}: missing columns {missing} (found {found})")
    return ", ".join(f"cast({c} as {t}) as {c}" for c, t in raw.columns.items())


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return [c.strip().strip('"') for c in f.readline().rstrip("\r\n").split(",")]


def _check_header(path: Path, raw: RawTable, header: list[str]) -> None:
    expected = list(raw.columns)
    if header != expected:
        raise RawLoadError(f"{path}: header is {header}, expected the columns {expected} in this order")


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")
