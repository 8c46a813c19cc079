"""The Spark adapter behind the run's seam (run/adapter.py): the same loads, models and checks as
on DuckDB, published the way SQLMesh's virtual layer publishes on engines without transactions.

Plain Parquet tables (nothing may download Delta or Iceberg here) have no DELETE, MERGE, CREATE OR
REPLACE or transactions. So each run writes new physical tables, `<schema>.<name>__r<run>`, reads its
own builds there, audits them, and only then points the published name, a view, at each one whose
blocking checks (and upstream's) passed. Versions no view points at are dropped at the end of the
run, and at the start of the next one when a run died. A view swap is atomic, a run's set of swaps
is not: a reader may see one table of the new run beside one of the old for the seconds the swaps
take (docs/spark.md).

Every model is built in full from its raw tables (a maintained or merged model too), and a raw table
is reloaded from all of its files on every run. One statement at a time: Spark parallelises inside a
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
from collections.abc import Mapping, Sequence
from pathlib import Path

from ecommerce_assets.errors import ModelError, RawLoadError
from ecommerce_assets.ingest.files import extra_columns, source_files
from ecommerce_assets.project.checks import CheckDecl
from ecommerce_assets.project.models import Model, retarget
from ecommerce_assets.project.node import Node
from ecommerce_assets.project.sources import LOADED_AT, RawTable
from ecommerce_assets.project.sources import SCHEMA as RAW_SCHEMA
from ecommerce_assets.run.adapter import (
    BUILT_IN_FULL,
    DEFAULT_PREVIEW_ROWS,
    PREVIEW_ROWS,
    SAMPLE_ROWS,
    Built,
    Checked,
    CheckOutcome,
    Project,
    Selection,
    TableStats,
)
from ecommerce_assets.run.duckdb.logs import CHECK_LOG, PUBLISH_LOG
from ecommerce_assets.run.engine import execute
from ecommerce_assets.run.options import RunOptions
from ecommerce_assets.run.outputs import output_path, staged_path
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


# Spark's error classes, `[CAST_INVALID_INPUT] The value 'abc' ...`: the line that says what went wrong,
# where a failed write wraps it in "Job aborted due to stage failure" and a JVM stack.
_ERROR_CLASS = re.compile(r"\[[A-Z][A-Z_]+(\.[A-Z_]+)*\]")


def first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    classed = [line[match.start() :] for line in lines if (match := _ERROR_CLASS.search(line))]
    return next(iter(classed or lines), type(error).__name__)


class SparkAdapter:
    """A run's hold on a Spark session (the resource's: it outlives the run)."""

    concurrency = 1
    # A failed statement is raised as the ModelError or RawLoadError naming its file (`build`).
    errors: tuple[type[BaseException], ...] = ()

    def __init__(self, spark, options: RunOptions, transpiled: Transpiled, run_id: str = ""):
        self.spark = spark  # pyspark.sql.SparkSession, classic or Spark Connect
        self.options = options
        self.transpiled = transpiled
        self.run_id = run_id or uuid.uuid4().hex
        self.version = "__r" + self.run_id.replace("-", "")[:12]
        self.started_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        self.analysis_date: dt.date | None = options.analysis_date
        self.physical: dict[str, str] = {}  # published table -> this run's version
        # (node name, staged folder, final path) of each export, renamed into place when the node is published.
        self.exports: list[tuple[str, Path, Path]] = []
        self.phases: dict[str, float] = {}
        self.schemas: list[str] = []
        self.log: Log | None = None

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

    def prepare(self, project: Project, log: Log) -> set[str]:
        self.log = log
        self.schemas = sorted({RAW_SCHEMA, *(n.layer for n in project.nodes)})
        for schema in self.schemas:
            self.sql(f"create database if not exists {schema}")
        self.sql(
            f"create table if not exists {PUBLISH_LOG} (run_id string, table_name string, row_count bigint,"
            " published_at timestamp, code_version string, inputs string) using parquet"
        )
        self.sql(
            f"create table if not exists {CHECK_LOG} (table_name string, check_name string, failing bigint,"
            " blocking boolean, run_id string, checked_at timestamp) using parquet"
        )
        self.set_variables()
        published, dropped = self._drop_unpublished()
        if dropped:
            log.warning(f"dropped what an earlier run left unpublished: {', '.join(dropped)}")
        return {table.split(".", 1)[1] for table in published}

    def _published_versions(self) -> tuple[dict[str, str], list[str]]:
        """Published name -> the version its view reads, and every version table there is."""
        published, versions = {}, []
        for schema in self.schemas:
            for row in self.sql(f"show tables in {schema}").collect():
                name = f"{schema}.{row.tableName}"
                if VERSION.match(row.tableName):
                    versions.append(name)
                elif not row.tableName.startswith("_"):
                    text = self.sql(f"show create table {name}").collect()[0][0]
                    found = re.search(rf"\b{re.escape(schema)}\.(\w+__r[0-9a-f]{{12}})\b", text)
                    if found:
                        published[name] = f"{schema}.{found.group(1)}"
        return published, versions

    def _drop_unpublished(self) -> tuple[dict[str, str], list[str]]:
        """Drops every version no view reads: old versions and what a dead or stopped run built.
        Returns what is published (as `_published_versions`) and what it dropped."""
        published, versions = self._published_versions()
        dropped = []
        for table in versions:
            if table not in published.values():
                self.sql(f"drop table if exists {table}")
                dropped.append(table)
        return published, dropped

    def unchanged_since(self, node: Node, rebuilt: set[str], exists: bool) -> str | None:
        return None  # every selected model is built in full

    def keep(self, node: Node, since: str) -> Built:
        raise NotImplementedError("Spark keeps no table: unchanged_since is always None")

    def build(self, node: Node, exists: bool) -> Built:
        started = time.perf_counter()
        target = node.table + self.version
        metadata: dict[str, object] = {}
        try:
            if isinstance(node, RawTable):
                files = self._load(node, target)
                metadata |= {"load": "replaced", "files_read": [str(p) for p in files]}
            else:
                if node.uses_analysis_date:
                    metadata["analysis_date"] = str(self._ensure_analysis_date())
                statement = (
                    f"create table {target} using parquet as\n{self.retarget(self.transpiled.models[node.name])}"
                )
                self.sql(statement)
                metadata["sql"] = statement
                if node.materialized == "incremental":
                    metadata["strategy"] = "full rebuild (Spark: no MERGE or DELETE on Parquet tables)"
            self.physical[node.table] = target
            if isinstance(node, Model) and node.export:
                metadata |= self._export(node)
            stats = self._stats(target, node.layer)
        except spark_errors() as e:
            raise ModelError(f"{node.path}: {first_line(e)}") from e
        return Built(node, metadata, stats, time.perf_counter() - started)

    def _load(self, raw: RawTable, target: str) -> list[Path]:
        """All of the raw table's files, their declared columns (matched by name, any case) cast to the
        declared types: a value that does not convert fails the load, as it does on DuckDB. Rows that
        convert but break a rule are the rejects model's, on both engines."""
        from pyspark.sql import functions as F

        files = source_files(self.options.data_dir, raw)
        extra_columns(raw, files)  # the header checks of ingest/files.py: a missing or doubled column fails here
        frames = []
        for path in files:
            if path.suffix == ".parquet":
                frame = self.spark.read.parquet(str(path))
            else:
                frame = self.spark.read.csv(
                    str(path), header=True, inferSchema=False, quote='"', escape='"', mode="FAILFAST"
                )
            by_name = {c.strip().lower(): c for c in frame.columns}
            frames.append(
                frame.select(
                    *[F.col(f"`{by_name[c.lower()]}`").cast(spark_type(t)).alias(c) for c, t in raw.columns.items()],
                    F.lit(self.started_at).cast("timestamp").alias(LOADED_AT[0]),
                )
            )
        rows = frames[0]
        for frame in frames[1:]:
            rows = rows.unionByName(frame)
        try:
            rows.write.format("parquet").saveAsTable(target)
        except spark_errors() as e:
            self.sql(f"drop table if exists {target}")
            where = files[0] if len(files) == 1 else files[0].parent
            raise RawLoadError(
                f"{where}: could not load into {raw.table} (the previous table is kept): {first_line(e)}"
            ) from e
        return files

    def _ensure_analysis_date(self) -> dt.date:
        if self.analysis_date is None:
            self.analysis_date = self.sql(self.retarget(self.transpiled.analysis_date)).collect()[0][0]
            self.log.info(f"analysis date: {self.analysis_date}")
            self.set_variables()
        return self.analysis_date

    def _export(self, model: Model) -> dict:
        """The export as a folder of part files (Spark writes one file per task), staged beside the
        published one until the run publishes the model."""
        e = model.export
        query = f"select * from {model.table}" + (f" where {e.where}" if e.where else "")
        query += f" order by {e.order_by}" if e.order_by else ""
        rows = self.sql(self.retarget(to_spark(query, f"{model.path} export"))).coalesce(1)
        path = output_path(self.options.output_dir, "exports", e.file)
        staged = staged_path(path)
        shutil.rmtree(staged, ignore_errors=True)
        writer = rows.write.mode("overwrite")
        if path.suffix == ".parquet":
            writer.parquet(str(staged))
        else:
            writer.csv(str(staged), header=True)
        self.exports.append((model.name, staged, path))
        return {"export_path": str(path), "export_rows": rows.count()}

    def _stats(self, table: str, layer: str) -> TableStats:
        frame = self.spark.table(table)
        preview = frame.limit(PREVIEW_ROWS.get(layer, DEFAULT_PREVIEW_ROWS)).collect()
        return TableStats(frame.count(), list(frame.dtypes), frame.columns, [tuple(r) for r in preview])

    def check(self, node: Node, checks: list[CheckDecl], kept: bool) -> list[Checked]:
        """One statement counts the failing rows of all of the node's checks (Spark runs its scalar
        subqueries side by side: one round trip instead of one per check), then a sample of each that
        fails. A statement that fails is retried check by check, so each reports its own error."""
        results, counted = [], []
        for check in checks:
            sql = self.retarget(self.transpiled.checks[(node.name, check.name)])
            if check.kind == "equals_full_rebuild" and node.table in self.physical:
                # Every model is built from scratch on Spark: the check's rebuild is this very statement.
                results.append(Checked(node, check, CheckOutcome(0, [], [], sql, note=BUILT_IN_FULL)))
            else:
                counted.append((check, sql))
        if not counted:
            return results
        errors = spark_errors()
        try:
            counts = self.sql(
                "select "
                + ", ".join(f"(select count(*) from (\n{sql}\n)) as c{i}" for i, (_, sql) in enumerate(counted))
            ).collect()[0]
        except errors:
            counts = [None] * len(counted)
        for (check, sql), failing in zip(counted, counts, strict=True):
            try:
                if failing is None:
                    failing = self.sql(f"select count(*) from (\n{sql}\n)").collect()[0][0]
                sample = self.sql(f"select * from (\n{sql}\n) limit {SAMPLE_ROWS}") if failing else None
                rows = [tuple(r) for r in sample.collect()] if sample is not None else []
                columns = sample.columns if sample is not None else []
                results.append(Checked(node, check, CheckOutcome(failing, columns, rows, sql)))
            except errors as e:
                results.append(Checked(node, check, None, f"check {check.name}: {node.path}: {first_line(e)}"))
        return results

    def publish(self, built: list[Built], checked: list[Checked]) -> None:
        """Points each published name at this run's version, then appends to the logs."""
        started = time.perf_counter()
        for event in built:
            table = event.node.table
            if self._kind(table) == "table":  # a table of another tool under the name: the view takes its place
                self.sql(f"drop table {table}")
            self.sql(f"create or replace view {table} as select * from {self.physical[table]}")
        stamp = f"cast('{self.started_at}' as timestamp)"
        rows = [
            f"('{self.run_id}', '{b.node.table}', {b.stats.rows}, {stamp}, '', '{self.analysis_date or ''}')"
            for b in built
        ]
        if rows:
            self.sql(f"insert into {PUBLISH_LOG} values {', '.join(rows)}")
        outcomes = [
            f"('{c.node.table}', '{c.check.name}', {c.outcome.failing}, {str(c.check.blocking).lower()},"
            f" '{self.run_id}', {stamp})"
            for c in checked
            if c.outcome is not None
        ]
        if outcomes:
            self.sql(f"insert into {CHECK_LOG} values {', '.join(outcomes)}")
        names = {b.node.name for b in built}
        for name, staged, final in self.exports:
            if name in names:
                shutil.rmtree(final, ignore_errors=True) if Path(final).is_dir() else Path(final).unlink(
                    missing_ok=True
                )
                os.replace(staged, final)
        self.log.info(f"published {len(built)} view(s), one at a time, in {time.perf_counter() - started:.2f} s")

    def _kind(self, table: str) -> str | None:
        schema, name = table.split(".", 1)
        for row in self.sql(f"show tables in {schema} like '{name}'").collect():
            if row.tableName == name:
                detail = self.sql(f"describe table extended {table}").collect()
                return "view" if any(r[0] == "Type" and r[1] == "VIEW" for r in detail) else "table"
        return None

    def after_publish(self) -> Mapping[str, float]:
        return {}

    def discard(self) -> None:
        self._drop_unpublished()
        for _, staged, _ in self.exports:
            shutil.rmtree(staged, ignore_errors=True)

    def interrupt(self) -> None:
        """Ends the running statements (from any thread)."""
        if hasattr(self.spark, "interruptAll"):  # Spark Connect
            self.spark.interruptAll()
        else:
            self.spark.sparkContext.cancelAllJobs()

    def close(self) -> None:
        """The session is the resource's: it outlives the run."""


class _PrintLog:
    def info(self, message: str) -> None:
        print(message)

    warning = error = info


def run_project(
    spark, nodes: Sequence, macros: Sequence[str], options: RunOptions, selection: Selection | None = None, log=None
) -> list[Built | Checked]:
    """One run of `nodes` on `spark` without Dagster (the tests' and the benchmark's): bound and
    transpiled as the definitions do, then executed."""
    from ecommerce_assets.run.duckdb.catalog import bind
    from ecommerce_assets.run.spark.transpile import transpile_project

    transpiled = transpile_project(nodes, bind(nodes, macros).columns)
    adapter = SparkAdapter(spark, options, transpiled)
    selection = selection or Selection.everything(nodes)
    return list(execute(adapter, Project(nodes, macros), selection, log or _PrintLog(), threading.Event()))
