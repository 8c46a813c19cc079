"""The seed's own SQL on DuckDB: the benchmark's reference point.

    python -m benchmarks.seed_baseline --data-dir DIR [--db PATH]

`seed_baseline.sql` is the dbt tutorial's project (4 seeds, 11 models, 23 tests) as plain DuckDB
statements, run back to back the way `dbt seed && dbt run && dbt test` would, minus dbt's own
overhead. Its SQL is the seed's, with only the changes DuckDB 2.0 needs, each keeping the meaning
(the same changes that produced the reference outputs the tests compare with): an `initcap` macro with PostgreSQL semantics, the `lag()`
moved out of `avg()` into a CTE, `dateadd` written as date arithmetic, `nullif` around the zero
denominator of `order_trend_ratio`, and `::float` written as `::double`. Timing it on the same
machine and data says what the project costs over the seed's SQL, and what its fixes cost.

Standard library and duckdb only: the benchmark runs this in a lean subprocess.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import duckdb

from ecommerce_assets.paths import SQL_DIR

SQL_FILE = Path(__file__).with_name("seed_baseline.sql")
# The seed relies on PostgreSQL's initcap; the project's macro has its semantics.
INITCAP_MACRO = SQL_DIR / "macros" / "initcap.sql"
SCHEMAS = ("raw", "staging", "intermediate", "marts", "ml")
HEADER = re.compile(r"^-- name: (\S+) kind: (setup|load|model|test)[ \t]*$", re.MULTILINE)


def statements(data_dir: str) -> list[tuple[str, str, str]]:
    """(name, kind, sql) of every statement, in order: the initcap macro, then seed_baseline.sql with {data_dir} filled in."""
    text = SQL_FILE.read_text().replace("{data_dir}", str(data_dir).rstrip("/").replace("'", "''"))
    parts = HEADER.split(text)[1:]  # drop the file's leading comment; then name, kind, body triples
    return [("initcap", "setup", INITCAP_MACRO.read_text().strip().rstrip(";"))] + [
        (name, kind, body.strip().rstrip(";").strip())
        for name, kind, body in zip(parts[0::3], parts[1::3], parts[2::3], strict=True)
    ]


def run(con: duckdb.DuckDBPyConnection, data_dir: str) -> list[dict]:
    """Create the schemas, then run every statement, timing each; tests report their failing rows."""
    for schema in SCHEMAS:
        con.execute(f"create schema if not exists {schema}")
    results = []
    for name, kind, sql in statements(data_dir):
        start = time.perf_counter()
        if kind == "test":
            # newline before ")": a test may end in a -- comment
            failing = con.execute(f"select count(*) from (\n{sql}\n)").fetchone()[0]
        else:
            con.execute(sql)
            failing = None
        row = {"name": name, "kind": kind, "s": time.perf_counter() - start}
        if kind == "test":
            row["failing"] = failing
        results.append(row)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder with raw_customers.csv etc.")
    parser.add_argument("--db", default=":memory:", help="DuckDB file (default: in memory)")
    args = parser.parse_args(argv)

    con = duckdb.connect(args.db)
    start = time.perf_counter()
    results = run(con, str(Path(args.data_dir).resolve()))
    wall = time.perf_counter() - start
    con.close()

    for r in results:
        failing = "" if r["kind"] != "test" else f"  failing={r['failing']}"
        print(f"{r['name']:<58} {r['kind']:<6} {r['s']:9.3f}s{failing}")
    print()
    for kind in ("setup", "load", "model", "test"):
        rows = [r for r in results if r["kind"] == kind]
        print(f"{kind + 's':<8} {len(rows):3d} statements {sum(r['s'] for r in rows):9.3f}s")
    print(f"{'total':<8} {len(results):3d} statements {wall:9.3f}s")
    failed = [r["name"] for r in results if r.get("failing")]
    if failed:
        print(f"FAILED tests: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
