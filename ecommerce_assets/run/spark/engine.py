"""One run on Spark: the same loads, models and checks as run/engine.py, published the way SQLMesh's
virtual layer publishes on engines without transactions.

Plain Parquet tables (nothing may download Delta or Iceberg here) have no DELETE, MERGE, CREATE OR
REPLACE or transactions. So each run writes new physical tables, `<schema>.<name>__r<run>`, reads its
own builds there, audits them, and only then points the published name, a view, at each one whose
blocking checks (and upstream's) passed. Versions no view points at are dropped at the end of the
run, and at the start of the next one when a run died. A view swap is atomic, a run's set of swaps
is not: a reader may see one table of the new run beside one of the old for the seconds the swaps
take (README, 'Beyond one machine').

Every model is built in full from its raw tables (a maintained or merged model too), and a raw table
is reloaded from all of its files on every run. The run is sequential: Spark parallelises inside a
statement across the cluster.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ecommerce_assets.errors import ModelError, RawLoadError, RunFailed
from ecommerce_assets.ingest.files import extra_columns, source_files
from ecommerce_assets.project.models import Model, retarget
from ecommerce_assets.project.sources import LOADED_AT, RawTable
from ecommerce_assets.project.sources import SCHEMA as RAW_SCHEMA
from ecommerce_assets.run.audit import SAMPLE_ROWS, CheckOutcome
from ecommerce_assets.run.build import DEFAULT_PREVIEW_ROWS, PREVIEW_ROWS, TableStats, output_path
from ecommerce_assets.run.context import RunOptions
from ecommerce_assets.run.engine import BUILT_IN_FULL, Built, Checked, Project, Selection
from ecommerce_assets.run.logs import CHECK_LOG, PUBLISH_LOG
from ecommerce_assets.run.publish import publishable, staged_path
from ecommerce_assets.run.pump import Log
from ecommerce_assets.run.spark.transpile import Transpiled, to_spark, variable_statements

# A run's physical tables: `<name>__r<12 hex digits of the run id>`.
VERSION = re.compile(r"^(?P<name>\w+?)__r(?P<run>[0-9a-f]{12})$")


def spark_errors() -> tuple[type[BaseException], ...]:
    """What a failed statement raises: PySpark's own errors, and Py4J's for the JVM's uncaught ones."""
    from pyspark.errors import PySparkException

    try:
        from py4j.protocol import Py4JError
    except ImportError:  # a Spark Connect client needs no JVM
        return (PySparkException,)
    return (PySparkException, Py4JError)


def spark_type(duckdb_type: str) -> str:
    """A declared column type (DuckDB's spelling) as Spark's: varchar -> string, integer -> int."""
    import sqlglot

    return sqlglot.exp.DataType.build(duckdb_type, dialect="duckdb").sql(dialect="spark").lower()


@dataclass
class SparkRun:
    spark: object  # pyspark.sql.SparkSession, classic or Spark Connect
    options: RunOptions
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    log: Log | None = None
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))
    analysis_date: dt.date | None = None
    physical: dict[str, str] = field(default_factory=dict)  # published table -> this run's version
    # (node name, staged folder, final path) of each export, renamed into place when the node is published.
    exports: list[tuple[str, Path, Path]] = field(default_factory=list)
    # Where the run's time went, seconds by phase, for the run's summary (as Run.phases).
    phases: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        self.analysis_date = self.options.analysis_date
        self.version = "__r" + self.run_id.replace("-", "")[:12]

    def sql(self, statement: str):
        return self.spark.sql(statement)

    def retarget(self, sql: str) -> str:
        return retarget(sql, self.physical)

    def set_variables(self) -> None:
        values = {
            "run_started_at": self.started_at,
            "max_row_drop": self.options.max_row_drop,
            "analysis_date": self.analysis_date,
        }
        for statement in variable_statements(values):
            self.sql(statement)

    def interrupt(self) -> None:
        """Ends the running statements (from any thread)."""
        if hasattr(self.spark, "interruptAll"):  # Spark Connect
            self.spark.interruptAll()
        else:
            self.spark.sparkContext.cancelAllJobs()

    def close(self) -> None:
        """The session is the resource's: it outlives the run."""


def prepare(run: SparkRun, project: Project) -> None:
    for schema in sorted({RAW_SCHEMA, *(n.layer for n in project.nodes)}):
        run.sql(f"create database if not exists {schema}")
    run.sql(
        f"create table if not exists {PUBLISH_LOG} (run_id string, table_name string, row_count bigint,"
        " published_at timestamp, code_version string, inputs string) using parquet"
    )
    run.sql(
        f"create table if not exists {CHECK_LOG} (table_name string, check_name string, failing bigint,"
        " blocking boolean, run_id string, checked_at timestamp) using parquet"
    )
    run.set_variables()
    dropped = drop_unpublished(run, project)
    if dropped:
        run.log.warning(f"dropped what an earlier run left unpublished: {', '.join(dropped)}")


def published_versions(run: SparkRun, schemas: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Published name -> the version its view reads, and every version table there is."""
    published, versions = {}, []
    for schema in schemas:
        for row in run.sql(f"show tables in {schema}").collect():
            name = f"{schema}.{row.tableName}"
            if VERSION.match(row.tableName):
                versions.append(name)
            elif not row.tableName.startswith("_"):
                text = run.sql(f"show create table {name}").collect()[0][0]
                found = re.search(rf"\b{re.escape(schema)}\.(\w+__r[0-9a-f]{{12}})\b", text)
                if found:
                    published[name] = f"{schema}.{found.group(1)}"
    return published, versions


def drop_unpublished(run: SparkRun, project: Project, keep: Sequence[str] = ()) -> list[str]:
    """Drops every version no view reads (but `keep`): old versions and what a dead run built."""
    schemas = sorted({RAW_SCHEMA, *(n.layer for n in project.nodes)})
    published, versions = published_versions(run, schemas)
    dropped = []
    for table in versions:
        if table not in published.values() and table not in keep:
            run.sql(f"drop table if exists {table}")
            dropped.append(table)
    return dropped


def execute(
    run: SparkRun, project: Project, transpiled: Transpiled, selection: Selection, log: Log, stop: threading.Event
) -> Iterator[Built | Checked]:
    """The selected loads, models and checks in dependency order; then the virtual publish. Events
    as run/engine.execute gives them: the built nodes that were published, and every check."""
    run.log = log
    prepare(run, project)
    errors = spark_errors()
    existing = set(published_versions(run, sorted({n.layer for n in project.nodes}))[0])
    held_back: set[str] = set()  # not built, or failed a blocking check: downstream must wait
    not_built: set[str] = set()  # its checks and the checks that read it are not run
    blocked: set[str] = set()
    built: list[Built] = []
    checked: list[Checked] = []
    failures: list[str] = []
    started = time.perf_counter()
    for node in project.nodes:
        if stop.is_set():
            break
        selected_checks = [c for c in node.checks if (node.name, c.name) in selection.checks]
        if node.name in selection.assets:
            waiting_on = [d for d in node.deps if d in held_back]
            if waiting_on:
                log.warning(f"{node.name}: skipped, upstream {waiting_on} failed or failed a blocking check")
                held_back.add(node.name)
                not_built.add(node.name)
                continue
            try:
                result = build(run, node, transpiled)
            except (*errors, RawLoadError, ModelError) as e:
                message = str(e).split("\n\n")[0] if isinstance(e, (RawLoadError, ModelError)) else _first_line(e)
                where = "" if isinstance(e, (RawLoadError, ModelError)) else f"{node.path}: "
                log.error(f"{node.name}: {where}{message}")
                failures.append(f"{node.name}: {where}{message}")
                held_back.add(node.name)
                not_built.add(node.name)
                continue
            built.append(result)
            log.info(
                f"{node.name}: built, {result.stats.rows:,} rows in {result.duration_s:.2f} s (published at the end)"
            )
        elif node.table not in existing:
            continue  # nothing to check: never built
        runnable = []
        for check in selected_checks:
            if any(
                d in not_built or (d not in selection.assets and _table(project, d) not in existing)
                for d in node.check_deps[check.name]
            ):
                log.warning(f"{node.name}: check {check.name} not run, a table it reads is not built")
            else:
                runnable.append(check)
        for event in run_checks(run, node, runnable, transpiled, from_scratch=node.name in selection.assets):
            checked.append(event)
            check = event.check
            if check.blocking and not (event.outcome and event.outcome.passed):
                log.error(f"{node.name}: blocking check {check.name} failed; downstream models are skipped")
                held_back.add(node.name)
                blocked.add(node.name)
    phases = {"loads, models and checks": time.perf_counter() - started}
    if stop.is_set():
        drop_unpublished(run, project)
        log.warning("run stopped: nothing published, the warehouse is as before the run")
        return
    started = time.perf_counter()
    try:
        published = publish(run, project, built, blocked, checked)
    finally:
        drop_unpublished(run, project)
    phases["publish"] = time.perf_counter() - started
    run.phases = dict(phases)
    log.info("run phases, wall s: " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()))
    yield from [b for b in built if b.node.name in published]
    yield from checked
    if failures:
        raise RunFailed(failures)


def _table(project: Project, name: str) -> str:
    return next(n.table for n in project.nodes if n.name == name)


# Spark's error classes, `[CAST_INVALID_INPUT] The value 'abc' ...`: the line that says what went wrong,
# where a failed write wraps it in "Job aborted due to stage failure" and a JVM stack.
_ERROR_CLASS = re.compile(r"\[[A-Z][A-Z_]+(\.[A-Z_]+)*\]")


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    classed = [line[match.start() :] for line in lines if (match := _ERROR_CLASS.search(line))]
    return next(iter(classed or lines), type(error).__name__)


def build(run: SparkRun, node, transpiled: Transpiled) -> Built:
    started = time.perf_counter()
    target = node.table + run.version
    metadata: dict[str, object] = {}
    if isinstance(node, RawTable):
        files = load(run, node, target)
        metadata |= {"load": "replaced", "files_read": [str(p) for p in files]}
    else:
        if node.uses_analysis_date:
            metadata["analysis_date"] = str(ensure_analysis_date(run, transpiled))
        sql = run.retarget(transpiled.models[node.name])
        statement = f"create table {target} using parquet as\n{sql}"
        try:
            run.sql(statement)
        except spark_errors() as e:
            raise ModelError(f"{node.path}: {_first_line(e)}") from e
        metadata["sql"] = statement
        if node.materialized == "incremental":
            metadata["strategy"] = "full rebuild (Spark: no MERGE or DELETE on Parquet tables)"
    run.physical[node.table] = target
    if isinstance(node, Model) and node.export:
        metadata |= export(run, node, target)
    return Built(node, metadata, stats(run, target, node.layer), time.perf_counter() - started)


def load(run: SparkRun, raw: RawTable, target: str) -> list[Path]:
    """All of the raw table's files, their declared columns (matched by name, any case) cast to the
    declared types: a value that does not convert fails the load, as it does on DuckDB. Rows that
    convert but break a rule are the rejects model's, on both engines."""
    from pyspark.sql import functions as F

    files = source_files(run.options.data_dir, raw)
    extra_columns(raw, files)  # the header checks of ingest/files.py: a missing or doubled column fails here
    frames = []
    for path in files:
        if path.suffix == ".parquet":
            frame = run.spark.read.parquet(str(path))
        else:
            frame = run.spark.read.csv(
                str(path), header=True, inferSchema=False, quote='"', escape='"', mode="FAILFAST"
            )
        by_name = {c.strip().lower(): c for c in frame.columns}
        frames.append(
            frame.select(
                *[F.col(f"`{by_name[c.lower()]}`").cast(spark_type(t)).alias(c) for c, t in raw.columns.items()],
                F.lit(run.started_at).cast("timestamp").alias(LOADED_AT[0]),
            )
        )
    rows = frames[0]
    for frame in frames[1:]:
        rows = rows.unionByName(frame)
    try:
        rows.write.format("parquet").saveAsTable(target)
    except spark_errors() as e:
        run.sql(f"drop table if exists {target}")
        where = files[0] if len(files) == 1 else files[0].parent
        raise RawLoadError(
            f"{where}: could not load into {raw.table} (the previous table is kept): {_first_line(e)}"
        ) from e
    return files


def ensure_analysis_date(run: SparkRun, transpiled: Transpiled) -> dt.date:
    if run.analysis_date is None:
        run.analysis_date = run.sql(run.retarget(transpiled.analysis_date)).collect()[0][0]
        run.log.info(f"analysis date: {run.analysis_date}")
        run.set_variables()
    return run.analysis_date


def export(run: SparkRun, model: Model, table: str) -> dict:
    """The export as a folder of part files (Spark writes one file per task), staged beside the
    published one until the run publishes the model."""
    e = model.export
    query = f"select * from {model.table}" + (f" where {e.where}" if e.where else "")
    query += f" order by {e.order_by}" if e.order_by else ""
    rows = run.sql(run.retarget(to_spark(query, f"{model.path} export"))).coalesce(1)
    path = output_path(run.options.output_dir, "exports", e.file)
    staged = staged_path(path)
    shutil.rmtree(staged, ignore_errors=True)
    writer = rows.write.mode("overwrite")
    if path.suffix == ".parquet":
        writer.parquet(str(staged))
    else:
        writer.csv(str(staged), header=True)
    run.exports.append((model.name, staged, path))
    return {"export_path": str(path), "export_rows": rows.count()}


def stats(run: SparkRun, table: str, layer: str) -> TableStats:
    frame = run.spark.table(table)
    preview = frame.limit(PREVIEW_ROWS.get(layer, DEFAULT_PREVIEW_ROWS)).collect()
    return TableStats(frame.count(), list(frame.dtypes), frame.columns, [tuple(r) for r in preview])


def run_checks(run: SparkRun, node, checks: list, transpiled: Transpiled, from_scratch: bool) -> list[Checked]:
    """One statement counts the failing rows of all of the node's checks (Spark runs its scalar
    subqueries side by side: one round trip instead of one per check), then a sample of each that
    fails. A statement that fails is retried check by check, so each reports its own error."""
    results, counted = [], []
    for check in checks:
        sql = run.retarget(transpiled.checks[(node.name, check.name)])
        if check.kind == "equals_full_rebuild" and from_scratch:
            # Every model is built from scratch on Spark: the check's rebuild is this very statement.
            results.append(Checked(node, check, CheckOutcome(0, [], [], sql, note=BUILT_IN_FULL)))
        else:
            counted.append((check, sql))
    if not counted:
        return results
    errors = spark_errors()
    try:
        counts = run.sql(
            "select " + ", ".join(f"(select count(*) from (\n{sql}\n)) as c{i}" for i, (_, sql) in enumerate(counted))
        ).collect()[0]
    except errors:
        counts = [None] * len(counted)
    for (check, sql), failing in zip(counted, counts, strict=True):
        try:
            if failing is None:
                failing = run.sql(f"select count(*) from (\n{sql}\n)").collect()[0][0]
            sample = run.sql(f"select * from (\n{sql}\n) limit {SAMPLE_ROWS}") if failing else None
            rows = [tuple(r) for r in sample.collect()] if sample is not None else []
            columns = sample.columns if sample is not None else []
            results.append(Checked(node, check, CheckOutcome(failing, columns, rows, sql)))
        except errors as e:
            results.append(Checked(node, check, None, f"check {check.name}: {node.path}: {_first_line(e)}"))
    return results


def publish(run: SparkRun, project: Project, built: list[Built], blocked: set[str], checked: list[Checked]) -> set[str]:
    """Points each publishable name at this run's version, then appends to the logs; returns the
    node names published. A failed blocking check holds its table and everything built from it."""
    deps = {n.name: n.deps for n in project.nodes}
    # The same rule as on DuckDB, where a staging model is a view of its upstream tables: what a held
    # view reads is held too, so both engines publish the same tables after the same failures.
    views = {n.name for n in project.nodes if n.materialized == "view"}
    names = publishable([b.node.name for b in built], blocked, deps, views)
    held = sorted({b.node.name for b in built} - names)
    if held:
        run.log.warning(f"built but not published (a blocking check failed on them or upstream): {held}")
    started = time.perf_counter()
    published = [b for b in built if b.node.name in names]
    for event in published:
        table = event.node.table
        kind = _kind(run, table)
        if kind == "table":  # a table of another tool under the name: the view takes its place
            run.sql(f"drop table {table}")
        run.sql(f"create or replace view {table} as select * from {run.physical[table]}")
    stamp = f"cast('{run.started_at}' as timestamp)"
    rows = [
        f"('{run.run_id}', '{b.node.table}', {b.stats.rows}, {stamp}, '', '{run.analysis_date or ''}')"
        for b in published
    ]
    if rows:
        run.sql(f"insert into {PUBLISH_LOG} values {', '.join(rows)}")
    checks = [
        f"('{c.node.table}', '{c.check.name}', {c.outcome.failing}, {str(c.check.blocking).lower()}, '{run.run_id}', {stamp})"
        for c in checked
        if c.outcome is not None and (c.node.name in names or c.node.name not in {b.node.name for b in built})
    ]
    if checks:
        run.sql(f"insert into {CHECK_LOG} values {', '.join(checks)}")
    for name, staged, final in run.exports:
        if name in names:
            shutil.rmtree(final, ignore_errors=True) if Path(final).is_dir() else Path(final).unlink(missing_ok=True)
            os.replace(staged, final)
        else:
            shutil.rmtree(staged, ignore_errors=True)
    run.log.info(f"published {len(published)} view(s), one at a time, in {time.perf_counter() - started:.2f} s")
    return {b.node.name for b in published}


def _kind(run: SparkRun, table: str) -> str | None:
    schema, name = table.split(".", 1)
    for row in run.sql(f"show tables in {schema} like '{name}'").collect():
        if row.tableName == name:
            detail = run.sql(f"describe table extended {table}").collect()
            return "view" if any(r[0] == "Type" and r[1] == "VIEW" for r in detail) else "table"
    return None


class _PrintLog:
    def info(self, message: str) -> None:
        print(message)

    warning = error = info


def run_project(
    spark, nodes: Sequence, macros: Sequence[str], options: RunOptions, selection: Selection | None = None, log=None
) -> list[Built | Checked]:
    """One run of `nodes` on `spark` without Dagster (the tests' and the benchmark's): bound and
    transpiled as the definitions do, then executed."""
    from ecommerce_assets.run.catalog import bind
    from ecommerce_assets.run.spark.transpile import transpile_project

    transpiled = transpile_project(nodes, bind(nodes, macros).columns)
    run = SparkRun(spark, options)
    selection = selection or Selection.everything(nodes)
    return list(execute(run, Project(nodes, macros), transpiled, selection, log or _PrintLog(), threading.Event()))
