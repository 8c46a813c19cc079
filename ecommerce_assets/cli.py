"""`ecommerce-assets build|check|compile`: the CI gate.

`dagster asset materialize` exits 0 when a non-blocking check fails, and Dagster has no command
that runs only checks. This runs the same jobs in-process (recorded in $DAGSTER_HOME when it is
set, so the UI shows the run), prints every check result, and exits non-zero when a run fails or
any ERROR-severity check fails. `compile` prints the SQL a run would execute (dbt compile).
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import warnings
from pathlib import Path

import dagster as dg

from ecommerce_assets.errors import ModelError, UsageError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ecommerce-assets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="materialize the graph (or --select a subset) with its checks")
    build.add_argument("--analysis-date", help="YYYY-MM-DD; default: the latest completed order date")
    build.add_argument("--data-dir", help="directory with the raw files; default: ECOMMERCE_DATA_DIR or data/")
    build.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from scratch")
    check = sub.add_parser("check", help="run only the checks against the tables already in the DuckDB file")
    compile_ = sub.add_parser(
        "compile", help="print the statements a run would execute, validated in memory (the DuckDB file is not opened)"
    )
    compile_.add_argument("--select", help="Dagster asset selection, e.g. 'tag:ml' or 'fct_customer_metrics*'")
    for command in (build, check):
        command.add_argument("--select", help="Dagster asset selection, e.g. 'tag:ml' or 'fct_customer_metrics*'")
        command.add_argument(
            "--threads",
            type=_at_least_one,
            help="statements run at a time (dbt's --threads); default: ECOMMERCE_CONCURRENCY",
        )
    args = parser.parse_args(argv)

    try:
        if getattr(args, "analysis_date", None):
            _analysis_date(args.analysis_date)
        defs = load_definitions()
        keys = select(defs, args.select) if args.select else None
        if args.command == "compile":
            print(compile_selection(keys), end="")
            return 0
        if args.command == "check":
            _built_before(defs)
        if args.command == "build" and _loads_raw(keys):
            _data_dir_exists(args.data_dir)
    except UsageError as e:  # a usage error: one line, before any data changes
        print(f"ecommerce-assets {args.command}: {e}", file=sys.stderr)
        return 2
    except ModelError as e:  # a broken model or check: `file:line: message`, without a traceback
        print(_one_line(e), file=sys.stderr)
        return 1

    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    if args.command == "check":
        job = defs.resolve_job_def("checks_job")
        if keys:
            subset = dg.define_asset_job("checks_of_selection", selection=dg.AssetSelection.checks_for_assets(*keys))
            job = dg.Definitions.merge(defs, dg.Definitions(jobs=[subset])).resolve_job_def(subset.name)
        result = job.execute_in_process(
            instance=instance, raise_on_error=False, run_config=_run_config(concurrency=args.threads)
        )
    else:
        result = defs.resolve_job_def("warehouse_job").execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config=_run_config(
                analysis_date=args.analysis_date,
                data_dir=args.data_dir,
                full_refresh=args.full_refresh,
                concurrency=args.threads,
            ),
            asset_selection=keys,  # with the checks of those assets
        )
    return report(result)


def select(defs: dg.Definitions, selection: str) -> list[dg.AssetKey]:
    """The assets `selection` names; a selection that matches nothing is a usage error naming
    the closest asset keys, tags and groups (a typo must not rebuild everything)."""
    graph = defs.resolve_asset_graph()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.BetaWarning)  # tag: selections, on every use
            keys = sorted(dg.AssetSelection.from_string(selection).resolve(graph))
    except Exception:  # an unknown key, or syntax Dagster's parser rejects
        keys = []
    if not keys:
        nodes = [graph.get(k) for k in graph.get_all_asset_keys()]
        names = {k.to_user_string() for k in graph.get_all_asset_keys()}
        names |= {f"tag:{t}" for n in nodes for t in n.tags if not t.startswith("dagster/")}
        names |= {f"group:{n.group_name}" for n in nodes}
        closest = difflib.get_close_matches(selection, sorted(names), n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(closest)}" if closest else ""
        raise UsageError(f"--select {selection!r} matches no asset{hint}")
    return keys


def _analysis_date(value: str) -> None:
    from ecommerce_assets.run.context import RunOptions

    try:
        RunOptions.parse_date(value, "--analysis-date")
    except ValueError as e:
        raise UsageError(str(e)) from None


def _built_before(defs: dg.Definitions) -> None:
    """`check` reads the tables a build wrote; without a warehouse it must not create an empty one."""
    if "duckdb" not in defs.resources:  # Spark: its metastore says, and a check of a missing table is not run
        return
    database = defs.resources["duckdb"].database
    if database != ":memory:" and not Path(database).exists():
        raise UsageError(f"no warehouse at {database} (ECOMMERCE_DUCKDB_PATH): run `ecommerce-assets build` first")


def _loads_raw(keys: list[dg.AssetKey] | None) -> bool:
    from ecommerce_assets.defs.translator import Translator
    from ecommerce_assets.project.sources import RAW_TABLES

    return keys is None or any(Translator().asset_key(r) in keys for r in RAW_TABLES)


def _data_dir_exists(flag: str | None) -> None:
    """The run's own check (factory.py) would fail the run; here it fails before a run is recorded."""
    from ecommerce_assets.settings import Settings, require_data_dir

    if flag:
        require_data_dir(flag, "--data-dir")
    else:
        require_data_dir(Settings.from_env().data_dir)


def load_definitions() -> dg.Definitions:
    """The code location's definitions; loading them binds every model and check (catalog.bind)."""
    from ecommerce_assets.definitions import defs

    return defs


def compile_selection(keys: list[dg.AssetKey] | None) -> str:
    """The statements a run of `keys` (default: everything) and their checks would execute."""
    from ecommerce_assets.definitions import load_project
    from ecommerce_assets.defs.translator import Translator
    from ecommerce_assets.project.sources import RAW_TABLES
    from ecommerce_assets.run.catalog import compile_sql
    from ecommerce_assets.run.engine import Project, Selection
    from ecommerce_assets.settings import Settings

    models, macros = load_project()
    nodes = [*RAW_TABLES, *models]
    selection = Selection.everything(nodes)
    if keys is not None:
        names = {n.name for n in nodes if Translator().asset_key(n) in set(keys)}
        selection = Selection(frozenset(names), frozenset(c for c in selection.checks if c[0] in names))
    settings = Settings.from_env()
    if settings.engine == "spark":
        from ecommerce_assets.run.catalog import bind
        from ecommerce_assets.run.spark.transpile import compile_spark, transpile_project

        transpiled = transpile_project(nodes, bind(nodes, macros).columns)
        return compile_spark(nodes, set(selection.assets), set(selection.checks), transpiled)
    return compile_sql(Project(nodes, macros), selection, Path(settings.data_dir), Path(settings.output_dir))


def _one_line(error: Exception) -> str:
    """The message's first paragraph (DuckDB's `LINE n:` excerpt follows it) on one line."""
    return " ".join(line.strip() for line in str(error).strip().split("\n\n")[0].splitlines())


def _at_least_one(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: use a whole number of at least 1")
    return int(value)


def _run_config(**options) -> dict | None:
    config = {k: v for k, v in options.items() if v is not None and v is not False}
    return {"ops": {"warehouse": {"config": config}}} if config else None


def report(result: dg.ExecuteInProcessResult) -> int:
    evaluations = result.get_asset_check_evaluations()
    errors = [e for e in evaluations if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    warnings = [e for e in evaluations if not e.passed and e.severity == dg.AssetCheckSeverity.WARN]
    for e in sorted(evaluations, key=lambda e: (e.asset_key.to_user_string(), e.check_name)):
        status = "pass" if e.passed else e.severity.value.lower()
        failing = e.metadata.get("failing_rows")
        detail = f" ({failing.value} failing rows)" if failing is not None and not e.passed else ""
        print(f"{status:5} {e.asset_key.to_user_string()}.{e.check_name}{detail}")
    materialized = len(result.get_asset_materialization_events())
    print(
        f"{materialized} assets materialized; {len(evaluations)} checks: "
        f"{len(evaluations) - len(errors) - len(warnings)} passed, {len(errors)} failed (ERROR), "
        f"{len(warnings)} warned; run {'succeeded' if result.success else 'FAILED'}"
    )
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
                print(event.step_failure_data.error.message.strip(), file=sys.stderr)
    return 0 if result.success and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
