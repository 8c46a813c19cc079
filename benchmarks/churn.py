"""Time and peak memory of the churn model's training path at N generated customers.

    python -m benchmarks.churn --customers 100000 [--workdir /tmp/churn-bench] [--keep]

Generates the data, builds the warehouse up to ml_customer_features with `ecommerce-assets build`
in a child process (not measured), then, in this process, builds the point-in-time training data,
trains and evaluates exactly as the assets do, and prints each step's seconds, this process's peak
memory (DuckDB and scikit-learn; the generator ran in it first, so it is an upper bound) and the holdout table of model against rule.
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from ecommerce_assets.definitions import load_project
from ecommerce_assets.defs.resources import DuckDBWarehouse
from ecommerce_assets.generate import generate
from ecommerce_assets.ml.churn import features as churn_features
from ecommerce_assets.ml.churn import model as churn_model
from ecommerce_assets.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, required=True)
    parser.add_argument("--workdir", help="default: a temporary directory, removed afterwards")
    parser.add_argument("--keep", action="store_true", help="keep the workdir")
    parser.add_argument("--seed", type=int, default=42, help="generator seed")
    args = parser.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="churn-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(work, args.customers, args.seed)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(work: Path, customers: int, seed: int) -> dict:
    env = {
        **os.environ,
        "ECOMMERCE_DATA_DIR": str(work / "data"),
        "ECOMMERCE_DUCKDB_PATH": str(work / "warehouse.duckdb"),
        "ECOMMERCE_OUTPUT_DIR": str(work / "output"),
    }
    start = time.perf_counter()
    generate(work / "data", customers, seed=seed, fmt="parquet")
    print(f"generate {customers:,} customers: {time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    cli = Path(sys.executable).parent / "ecommerce-assets"
    built = subprocess.run(
        [str(cli), "build", "--select", "*ml_customer_features"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if built.returncode != 0:
        raise SystemExit(f"warehouse build failed:\n{built.stdout[-2000:]}\n{built.stderr[-2000:]}")
    print(f"warehouse up to ml_customer_features (not measured below): {time.perf_counter() - start:.1f} s", flush=True)

    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("ECOMMERCE_")})
    models, _ = load_project()
    timings = {}
    with DuckDBWarehouse.from_settings(settings).get_connection() as con:
        start = time.perf_counter()
        data = churn_features.build_training_data(con, models)
        timings["training data"] = time.perf_counter() - start
        start = time.perf_counter()
        bundle = churn_model.train(con, churn_features.training_features(con))
        timings["train"] = time.perf_counter() - start
        if isinstance(bundle, str):
            raise SystemExit(bundle)
        bundle["model_version"] = "benchmark"
        start = time.perf_counter()
        result = churn_model.evaluate(con, bundle)
        timings["evaluate"] = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = sum(timings.values())

    c = data.cutoffs
    print(
        f"cutoffs: {len(c.train)} training ({c.train[0]} .. {c.train[-1]}), holdout {c.holdout}; "
        f"data end {c.data_end}; {data.rows:,} rows; sample {data.sample_fraction:.3f} of {data.customers:,} customers"
    )
    for step, seconds in timings.items():
        print(f"{step:14} {seconds:6.1f} s")
    print(f"{'total':14} {total:6.1f} s   peak memory {peak_mib:,.0f} MiB (DuckDB {duckdb.__version__})")
    print(
        f"\nholdout {c.holdout}: {result['holdout_rows']:,} customers, churn rate {result['holdout_churn_rate']:.3f}\n"
    )
    print("| metric | model | seed's rule |")
    print("|---|---|---|")
    for name in result["model"]:
        print(f"| {name} | {result['model'][name]:.3f} | {result['rule'][name]:.3f} |")
    return {"timings": timings, "peak_mib": peak_mib, "model": result["model"], "rule": result["rule"]}


if __name__ == "__main__":
    main()
