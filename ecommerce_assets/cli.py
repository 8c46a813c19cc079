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
    build.add_argument(
        "--defer-to",
        metavar="PATH",
        help="with --select 'state:modified+': read the unchanged upstream tables from this warehouse or readers' copy",
    )
    check = sub.add_parser("check", help="run only the checks against the tables already in the DuckDB file")
    compile_ = sub.add_parser(
        "compile", help="print the statements a run would execute, validated in memory (the DuckDB file is not opened)"
    )
    compile_.add_argument("--select", help="Dagster asset selection, e.g. 'tag:ml' or 'fct_customer_metrics*'")
    test = sub.add_parser(
        "test", help="run the models' unit tests (sql/<layer>/<model>.tests.yaml) in memory: no data, no warehouse"
    )
    test.add_argument("--select", help="Dagster asset selection of the models whose cases run")
    diff = sub.add_parser(
        "diff", help="compare the warehouse's tables with another warehouse (e.g. production's readers' copy)"
    )
    diff.add_argument("--against", required=True, help="the other DuckDB file, opened read-only")
    diff.add_argument("--select", help="Dagster asset selection of the models to compare; default: every model")
    diff.add_argument("--format", choices=("text", "markdown"), default="text")
    plan_ = sub.add_parser(
        "plan", help="what the checkout's model changes will rebuild, against what a warehouse last published"
    )
    plan_.add_argument("--against", help="a warehouse or readers' copy; default: the target's warehouse")
    plan_.add_argument("--format", choices=("text", "markdown"), default="text")
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
        if args.command == "test" and not args.select:  # no Dagster needed: the cases start at once
            return model_tests(None)
        if args.command == "plan":
            print(plan_against(args.against, args.format), end="")
            return 0
        defs = load_definitions()
        keys = select(defs, args.select) if args.select and args.select != STATE_MODIFIED else None
        if args.command == "compile":
            print(compile_selection(keys), end="")
            return 0
        if args.command == "test":
            return model_tests(keys)
        if args.command == "diff":
            print(diff_warehouses(keys, args.against, args.format), end="")
            return 0
        if args.command == "build" and (args.defer_to or args.select == STATE_MODIFIED):
            keys, analysis_date = defer(args.select, args.defer_to)
            if not keys:
                print("slim build: no model changed, nothing to build")
                return 0
            args.analysis_date = args.analysis_date or analysis_date
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
    return report(result, instance)


# dbt's selector of the changed models and everything downstream of them (`plan` says which).
STATE_MODIFIED = "state:modified+"


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
    from ecommerce_assets.run.options import RunOptions

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
    from ecommerce_assets.run.adapter import Project, Selection
    from ecommerce_assets.run.duckdb.catalog import compile_sql
    from ecommerce_assets.settings import Settings

    models, macros = load_project()
    nodes = [*RAW_TABLES, *models]
    selection = Selection.everything(nodes)
    if keys is not None:
        names = {n.name for n in nodes if Translator().asset_key(n) in set(keys)}
        selection = Selection(frozenset(names), frozenset(c for c in selection.checks if c[0] in names))
    settings = Settings.from_env()
    if settings.engine == "spark":
        from ecommerce_assets.run.duckdb.catalog import bind
        from ecommerce_assets.run.spark.transpile import compile_spark, transpile_project

        transpiled = transpile_project(nodes, bind(nodes, macros).columns)
        return compile_spark(nodes, set(selection.assets), set(selection.checks), transpiled)
    return compile_sql(Project(nodes, macros), selection, Path(settings.data_dir), Path(settings.output_dir))


def model_tests(keys: list[dg.AssetKey] | None) -> int:
    """Runs the unit-test cases of the models (of `keys`' models only, when given); 1 if any fails."""
    from ecommerce_assets.definitions import load_project
    from ecommerce_assets.defs.translator import Translator
    from ecommerce_assets.project.sources import RAW_TABLES
    from ecommerce_assets.review.cases import load_cases, run_cases

    models, macros = load_project()
    cases = load_cases(models)
    if keys is not None:
        cases = [c for c in cases if Translator().asset_key(c.model) in set(keys)]
    results = list(run_cases([*RAW_TABLES, *models], macros, cases))
    for result in results:
        print(result.report())
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} cases passed, {failed} failed")
    return 1 if failed else 0


def _warehouse_path() -> str:
    from ecommerce_assets.settings import Settings

    return Settings.from_env().duckdb_path


def diff_warehouses(keys: list[dg.AssetKey] | None, against: str, format_: str) -> str:
    """The table diff of the target's warehouse against `against`, over the models of `keys` (default:
    the models whose tables both have)."""
    import duckdb

    from ecommerce_assets.definitions import load_project
    from ecommerce_assets.defs.translator import Translator
    from ecommerce_assets.review.against import OTHER, attach, relations
    from ecommerce_assets.review.table_diff import as_markdown, as_text, diff_tables

    database = _warehouse_path()
    if not Path(database).is_file():
        raise UsageError(f"ECOMMERCE_DUCKDB_PATH={database}: no DuckDB file there")
    models, _ = load_project()
    try:
        con = duckdb.connect(database, read_only=True)
    except duckdb.IOException as e:  # a run holds the file
        raise UsageError(f"ECOMMERCE_DUCKDB_PATH={database}: cannot be opened read-only now ({e})") from e
    try:
        attach(con, against, "--against")
        if keys is not None:
            chosen = [m for m in models if Translator().asset_key(m) in set(keys)]
        else:
            here = relations(con, con.execute("select current_database()").fetchone()[0])
            chosen = [m for m in models if m.table in here & relations(con, OTHER)]
        diffs = diff_tables(con, chosen)
    finally:
        con.close()
    return as_markdown(diffs) if format_ == "markdown" else as_text(diffs)


def _plan(against: str, flag: str):
    """The plan of the checkout against `against`, the nodes, and the state it read."""
    import duckdb

    from ecommerce_assets.definitions import load_project
    from ecommerce_assets.project.sources import RAW_TABLES
    from ecommerce_assets.review.against import OTHER, attach
    from ecommerce_assets.review.change_plan import plan, published_state
    from ecommerce_assets.run.duckdb.catalog import bind

    models, macros = load_project()
    nodes = [*RAW_TABLES, *models]
    con = duckdb.connect()
    try:
        attach(con, against, flag)
        try:
            state = published_state(con, OTHER)
        except ValueError as e:
            raise UsageError(f"{flag} {against}: {e}") from None
    finally:
        con.close()
    return plan(nodes, bind(nodes, macros), state), nodes, state


def plan_against(against: str | None, format_: str) -> str:
    from ecommerce_assets.review.change_plan import as_markdown, as_text

    planned, _, _ = _plan(against or _warehouse_path(), "--against" if against else "ECOMMERCE_DUCKDB_PATH")
    return as_markdown(planned) if format_ == "markdown" else as_text(planned)


def defer(selection: str | None, defer_to: str | None) -> tuple[list[dg.AssetKey], str | None]:
    """A slim build (dbt's `--select state:modified+ --defer`): the assets to build (the changed models
    and everything downstream of them, see review.defer) and the analysis date `defer_to` published with."""
    from ecommerce_assets.defs.translator import Translator
    from ecommerce_assets.review.change_plan import published_analysis_date, selected
    from ecommerce_assets.review.defer import defer_upstream

    if selection != STATE_MODIFIED or not defer_to:
        raise UsageError(f"--defer-to goes with --select '{STATE_MODIFIED}' (both or neither)")
    planned, nodes, state = _plan(defer_to, "--defer-to")
    changed = {n.name for n in nodes if n.table in selected(planned)}
    if not changed:  # nothing to build: no warehouse is made either
        return [], None
    build, deferred = defer_upstream(_warehouse_path(), defer_to, nodes, changed)
    print(f"slim build: {len(build)} asset(s) to build, {len(deferred)} upstream table(s) read from {defer_to}")
    analysis_date = published_analysis_date(state)
    keys = [Translator().asset_key(n) for n in nodes if n.name in build]
    return keys, analysis_date.isoformat() if analysis_date else None


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


def report(result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance) -> int:
    from ecommerce_assets.defs.events import PHASES_TAG

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
    # What the run could not build and why (ml/churn/assets.not_built), and where its time went:
    # the run's tags, as the UI shows them.
    for event in result.all_events:
        if event.is_asset_observation and event.asset_observation_data:
            observation = event.asset_observation_data.asset_observation
            if "reason" in observation.metadata:
                reason = observation.metadata["reason"].value
                print(f"not built: {observation.asset_key.to_user_string()}: {reason}")
    tags = (instance.get_run_by_id(result.run_id) or result.dagster_run).tags
    if PHASES_TAG in tags:
        print(f"run phases: {tags[PHASES_TAG]}")
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
                print(event.step_failure_data.error.message.strip(), file=sys.stderr)
    return 0 if result.success and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
