"""What loading the definitions costs, phase by phase (the code server reloads them often).

    python -m benchmarks.load_time [--repeat 5]

Each repeat runs in a fresh interpreter: importing Dagster, then the project's phases one by one
(parse the SQL files, bind every model and check in DuckDB without and with the catalog cache,
column lineage, which the load puts in the column descriptions) and the whole `build_definitions()`.
Prints the median of each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

PROBE = """
import json, tempfile, time
t = time.perf_counter()
import dagster
phases = {"import dagster": time.perf_counter() - t}
from ecommerce_assets.run import catalog
from ecommerce_assets.definitions import build_definitions, load_project
from ecommerce_assets.project.lineage import column_lineage
from ecommerce_assets.project.sources import RAW_TABLES
from ecommerce_assets.settings import Settings

def timed(name, fn):
    t = time.perf_counter()
    value = fn()
    phases[name] = time.perf_counter() - t
    return value

models, macros = timed("parse the SQL files", load_project)
nodes = [*RAW_TABLES, *models]
bound = timed("bind in DuckDB, no cache", lambda: catalog.bind(nodes, macros, cache=False))
timed("bind in DuckDB, cached", lambda: catalog.bind(nodes, macros))
timed("column lineage (part of the load)", lambda: catalog.model_lineage(models, bound))
timed("build_definitions(), cached", lambda: build_definitions(Settings.from_env({})))
print(json.dumps(phases))
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    runs = [
        json.loads(subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout)
        for _ in range(args.repeat)
    ]
    print(f"definitions load, median of {args.repeat} fresh interpreters (seconds):")
    for phase in runs[0]:
        print(f"  {phase:<32}{statistics.median(r[phase] for r in runs):8.3f}")


if __name__ == "__main__":
    main()
