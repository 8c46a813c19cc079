"""Reading the raw export files: which files a table has, and the SQL that reads them typed.

The validation of what users deliver lives here (headers, formats); run/duckdb/load.py decides where the
rows go and keeps the load log. A file that cannot be read as the declared table fails the run
with a message naming the file and the line (`RawLoadError`, or DuckDB's own conversion error,
which names the line, the column and the value); rows that read fine but break a rule are the
rejects model's business (sql/staging/stg_rejected_rows.sql).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ecommerce_assets.errors import RawLoadError
from ecommerce_assets.project.sources import RawTable

# How much of a CSV file is sniffed for binary content and for its header line.
_SNIFF_BYTES = 64 * 1024
# Separators a header written with the wrong one usually has; named in the error.
_OTHER_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "pipes"}
_PARQUET_MAGIC = b"PAR1"


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
    """`select ... from <reader>`: the declared columns, typed and in declared order, then
    `loaded_at` (the run's start). Columns are matched by name in each file, so their order
    does not matter and extra columns are read as text and left out."""
    if files[0].suffix == ".parquet":
        return _select_parquet(con, raw, files, loaded_at)
    layouts: dict[tuple[tuple[str, str], ...], list[Path]] = {}
    for path in files:
        layouts.setdefault(_csv_layout(path, raw).reader_columns, []).append(path)
    # One reader per distinct header: read_csv takes one column list for all its files.
    declared = ", ".join(raw.columns)
    return " union all ".join(
        f"select {declared}, getvariable('run_started_at') as {loaded_at} from {_read_csv(paths, columns)}"
        for columns, paths in layouts.items()
    )


def extra_columns(raw: RawTable, files: Iterable[Path]) -> dict[Path, list[str]]:
    """File -> the columns it has beyond the declared ones (loaded by name, then ignored), for the
    files that have any. Raises RawLoadError like `read_sql` for a file that cannot be read."""
    extras = {}
    for path in files:
        if path.suffix == ".parquet":
            found = _parquet_columns(path)
            known = {c.lower() for c in raw.columns}
            names = [c for c in found if c.lower() not in known]
        else:
            names = _csv_layout(path, raw).extra
        if names:
            extras[path] = names
    return extras


@dataclass(frozen=True)
class _Layout:
    # (name, type) in file order: declared columns under their declared name, others as text.
    reader_columns: tuple[tuple[str, str], ...]
    extra: list[str]


def _csv_layout(path: Path, raw: RawTable) -> _Layout:
    header = _csv_header(path, raw)
    wanted = {c.lower(): c for c in raw.columns}
    seen: dict[str, int] = {}
    reader_columns, extra = [], []
    for position, name in enumerate(header, start=1):
        key = name.strip().lower()
        if key in seen:
            raise RawLoadError(
                f"{path}:1: column {name.strip()!r} appears twice in the header (columns {seen[key]} and {position})"
            )
        seen[key] = position
        if key in wanted:
            reader_columns.append((wanted[key], raw.columns[wanted[key]]))
        else:
            # Named by position: a user's header may hold any text, and these are never read.
            reader_columns.append((f"_extra_{position}", "varchar"))
            extra.append(name.strip() or f"(column {position}, no name)")
    missing = [c for c in raw.columns if c.lower() not in seen]
    if missing:
        raise RawLoadError(
            f"{path}:1: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(the header has {', '.join(h.strip() for h in header)}; {raw.table} needs {', '.join(raw.columns)})"
        )
    return _Layout(tuple(reader_columns), extra)


def _csv_header(path: Path, raw: RawTable) -> list[str]:
    """The first record of a CSV file, after ruling out what is no CSV export at all."""
    with path.open("rb") as f:
        head = f.read(_SNIFF_BYTES)
    if not head.strip():
        what = "0 bytes" if not head else "only blank lines"
        raise RawLoadError(
            f"{path}:1: the file is empty ({what}); a CSV export starts with its header: {', '.join(raw.columns)}"
        )
    if head.startswith(_PARQUET_MAGIC):
        raise RawLoadError(f"{path}:1: this is a Parquet file, not CSV; name it {path.stem}.parquet")
    nul = head.find(b"\x00")
    if nul >= 0:
        line = head.count(b"\n", 0, nul) + 1
        raise RawLoadError(f"{path}:{line}: not a text file (a NUL byte at offset {nul}), so no CSV")
    text = head.decode("utf-8-sig", errors="replace")
    if "\ufffd" in text.split("\n", 1)[0]:
        raise RawLoadError(f"{path}:1: the header is not UTF-8 text; export the file as UTF-8 CSV")
    header = next(csv.reader(io.StringIO(text)))
    if len(header) == 1:
        for delimiter, name in _OTHER_DELIMITERS.items():
            if delimiter in header[0]:
                raise RawLoadError(
                    f"{path}:1: the header is separated by {name}, not commas ({header[0].strip()!r}); "
                    "export the file as comma-separated CSV"
                )
    return header


def _read_csv(paths: list[Path], columns: tuple[tuple[str, str], ...]) -> str:
    files = "[" + ", ".join(_literal(str(p)) for p in paths) + "]"
    spec = ", ".join(f"{_literal(name)}: {_literal(type_)}" for name, type_ in columns)
    return (
        f"read_csv({files}, header = true, auto_detect = false, delim = ',', "
        f"quote = '\"', escape = '\"', dateformat = '%Y-%m-%d', columns = {{{spec}}})"
    )


def _select_parquet(con: duckdb.DuckDBPyConnection, raw: RawTable, files: list[Path], loaded_at: str) -> str:
    for path in files:
        found = {c.lower() for c in _parquet_columns(path, con)}
        missing = [c for c in raw.columns if c.lower() not in found]
        if missing:
            raise RawLoadError(
                f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"(the file has {', '.join(_parquet_columns(path, con))}; {raw.table} needs {', '.join(raw.columns)})"
            )
    # union_by_name: files of one table may order their columns differently.
    paths = "[" + ", ".join(_literal(str(p)) for p in files) + "]"
    typed = ", ".join(f"cast({c} as {t}) as {c}" for c, t in raw.columns.items())
    return (
        f"select {typed}, getvariable('run_started_at') as {loaded_at} from read_parquet({paths}, union_by_name = true)"
    )


def _parquet_columns(path: Path, con: duckdb.DuckDBPyConnection | None = None) -> list[str]:
    try:
        con = con or duckdb.connect()
        return [r[0] for r in con.execute(f"describe select * from read_parquet({_literal(str(path))})").fetchall()]
    except duckdb.Error as e:
        raise RawLoadError(f"{path}: not a readable Parquet file: {str(e).splitlines()[0]}") from e


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
