"""The DuckDB adapter behind the run's seam (run/adapter.py): one DuckDB file, each worker on its
own cursor, everything built under temporary names and published in one transaction (publish.py),
and the readers' copy written beside it (serve.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

import duckdb

from ecommerce_assets.project.checks import CheckDecl
from ecommerce_assets.project.models import Model
from ecommerce_assets.project.node import Node, fingerprints
from ecommerce_assets.project.sources import RawTable
from ecommerce_assets.run.adapter import BUILT_IN_FULL, Built, Checked, CheckOutcome, Project
from ecommerce_assets.run.duckdb import logs
from ecommerce_assets.run.duckdb.audit import failing_rows, screen
from ecommerce_assets.run.duckdb.build import build_model, build_raw, located, table_stats
from ecommerce_assets.run.duckdb.context import Run
from ecommerce_assets.run.duckdb.keys import VERIFY_KEYS
from ecommerce_assets.run.duckdb.publish import clean_up, publish
from ecommerce_assets.run.duckdb.serve import copy_statement, files_folder, table_file, write_serving_copy
from ecommerce_assets.run.options import RunOptions
from ecommerce_assets.run.outputs import drop_staged
from ecommerce_assets.run.pump import Log

# Not in the readers' copy: the raw exports (readers have the files), staging's views of them
# (copying them would copy every raw row on each run), and the intermediate building blocks, which
# a daily run rewrites in part and readers have no use for (marts, ml and analyses are theirs).
SERVING_SKIPS = ("raw", "staging", "intermediate")

# Hand-written work that follows a model's SQL (the analyses' charts): returns extra metadata.
AfterBuild = Callable[[duckdb.DuckDBPyConnection, Model, Run], Mapping[str, object]]


class DuckDBAdapter:
    """A run's hold on one DuckDB connection (the resource's, holding the file's write lock)."""

    errors = (duckdb.Error,)

    def __init__(self, con: duckdb.DuckDBPyConnection, options: RunOptions, run_id: str = ""):
        self.run = Run(con, options, run_id=run_id)
        self.run_id = self.run.run_id
        self.concurrency = options.concurrency
        self.phases: dict[str, float] = {}
        self.after_build: Mapping[str, AfterBuild] = {}

    def prepare(self, project: Project, log: Log) -> set[str]:
        """Drops what a run that died left, then creates the schemas, the logs and the macros before
        the workers start (two workers creating the same object at once would conflict)."""
        run, con = self.run, self.run.con
        run.log = log
        run.versions = fingerprints(project.nodes)
        run.maintained = tuple(n.table for n in project.nodes if n.maintained)
        run.schemas = {n.name: n.layer for n in project.nodes}
        self.after_build = project.after_build
        dropped = clean_up(con, run.output_dir)
        if run.options.serving_path:
            dropped += drop_staged(files_folder(run.options.serving_path))
        if dropped:
            log.warning(f"dropped what an earlier run left unpublished: {', '.join(dropped)}")
        for schema in sorted({"raw", *(n.layer for n in project.nodes)}):
            con.execute(f"create schema if not exists {schema}")
        logs.create_load_log(con)
        logs.create_publish_log(con)
        for macro in project.macros:
            con.execute(macro)
        return {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}

    def unchanged_since(self, node: Node, rebuilt: set[str], exists: bool) -> str | None:
        """See Run.published_as. Raw loads decide for themselves (files already loaded are not read again)."""
        run = self.run
        if isinstance(node, RawTable) or not exists or run.options.full_refresh:
            return None
        upstream = [*node.deps, *(t for ts in node.check_deps.values() for t in ts)]
        if any(name in rebuilt for name in upstream):
            return None
        cur = run.cursor()
        if node.uses_analysis_date:
            run.ensure_analysis_date(cur)
        tables = {n: f"{schema}.{n}" for n, schema in run.schemas.items()}
        return run.published_as(cur, node, [tables[n] for n in upstream if n in tables])

    def keep(self, node: Node, since: str) -> Built:
        started = time.perf_counter()
        stats = table_stats(self.run.cursor(), node.table, node.layer)
        return Built(node, {"unchanged_since": since}, stats, round(time.perf_counter() - started, 3))

    def build(self, node: Node, exists: bool) -> Built:
        run = self.run
        started = time.perf_counter()
        cur = run.cursor()
        if isinstance(node, RawTable):
            metadata = build_raw(run, cur, node)
        else:
            metadata = build_model(run, cur, node, exists)
            if after := self.after_build.get(node.name):
                metadata |= after(cur, node, run)
        stats = table_stats(cur, run.relation(node.table), node.layer)
        if run.options.serving_path and node.layer not in SERVING_SKIPS and node.materialized != "view":
            # The readers' file of this version, on this worker beside the other statements rather
            # than after the publish; it is renamed into place when the run publishes the node.
            path = table_file(files_folder(run.options.serving_path), node.table, run.run_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            run.stage_file(
                node.name, path, lambda staged: cur.execute(copy_statement(cur, run.relation(node.table), staged))
            )
            metadata["readers_file"] = path
        return Built(node, metadata, stats, round(time.perf_counter() - started, 3))

    def check(self, node: Node, checks: list[CheckDecl], kept: bool) -> list[Checked]:
        """A kept model's check that ran on the table as published (at or after its publish) reads
        what it read then, so its outcome stands and is reported again; every other check runs."""
        if not kept:
            return self._run_checks(node, checks)
        last = logs.checks_since_publish(self.run.cursor(), node.table)
        carried = [
            Checked(
                node, c, CheckOutcome(last[c.name][0], [], [], node.check_sql[c.name]), carried_from=last[c.name][1]
            )
            for c in checks
            if c.name in last
        ]
        return carried + self._run_checks(node, [c for c in checks if c.name not in last])

    def _run_checks(self, model: Model, checks: list[CheckDecl]) -> list[Checked]:
        """One statement counts every check's failures, then the failing rows of those that fail."""
        if not checks:
            return []
        run = self.run
        cur = run.cursor()
        results = []
        pending = run.publication.relations.get(model.name)
        if pending is not None and pending.from_scratch:
            # Built from scratch by this run's own SQL: what equals_full_rebuild would rebuild and
            # compare with is this very statement, on the same inputs (a full build's table rows are
            # equal by construction), so the whole-table scan it costs proves nothing.
            for check in [c for c in checks if c.kind == "equals_full_rebuild"]:
                outcome = CheckOutcome(0, [], [], run.retarget(model.check_sql[check.name]), note=BUILT_IN_FULL)
                results.append(Checked(model, check, outcome))
            checks = [c for c in checks if c.kind != "equals_full_rebuild"]
            if not checks:
                return results
        if any(c.kind == "equals_full_rebuild" for c in checks):
            run.ensure_keys(cur, VERIFY_KEYS)
        try:
            count_sql = {name: run.retarget(sql) for name, sql in model.check_count_sql.items()}
            screened = screen(cur, run.relation(model.table), checks, count_sql)
        except duckdb.Error:
            screened = {}  # each check then runs its own query and reports its own error
        for check in checks:
            sql = run.retarget(model.check_sql[check.name])
            try:
                outcome = CheckOutcome(0, [], [], sql) if screened.get(check.name) == 0 else failing_rows(cur, sql)
            except duckdb.Error as e:
                where = located(e, sql, sql, model.path, check.sql_line) if check.sql_line else f"{model.path}: {e}"
                results.append(Checked(model, check, None, f"check {check.name}: {where}"))
                continue
            results.append(Checked(model, check, outcome))
        return results

    def publish(self, built: list[Built], checked: list[Checked]) -> None:
        """The relations in one transaction, then the check outcomes, for a later run that keeps a
        table as it is to report them again instead of rerunning them."""
        run = self.run
        started = time.perf_counter()
        order = [b.node.name for b in built]
        publish(run.cursor(), run.publication, order, run.run_id, {b.node.name: b.stats.rows for b in built})
        run.log.info(f"published {len(order)} relation(s) in one transaction in {time.perf_counter() - started:.2f} s")
        rows = [
            [e.node.table, e.check.name, e.outcome.failing, e.check.blocking, run.run_id] for e in checked if e.outcome
        ]
        logs.record_checks(run.cursor(), rows)

    def after_publish(self) -> Mapping[str, float]:
        """The readers' copy of what is published (serve.py). The warehouse is published whatever
        happens here: a failure is logged, and readers keep the previous copy."""
        run = self.run
        path: Path | None = run.options.serving_path
        started = time.perf_counter()
        if path:
            try:
                copy = write_serving_copy(run.con, path, SERVING_SKIPS, run.run_id)
            except (duckdb.Error, OSError) as e:
                run.log.error(f"readers' copy {path}: not written, readers keep the previous one: {e}")
            else:
                run.log.info(
                    f"readers' copy {path} in {time.perf_counter() - started:.2f} s: "
                    f"{len(copy.reused) + len(copy.written)} table(s) as Parquet files ({len(copy.written)} written"
                    f" after the publish), {len(copy.views)} view(s), {len(copy.dropped)} dropped,"
                    f" {copy.files_deleted} old file(s) deleted"
                )
        return {"readers' copy": time.perf_counter() - started}

    def discard(self) -> None:
        """What was built and not published, and the run's deltas."""
        clean_up(self.run.con, self.run.output_dir)

    def interrupt(self) -> None:
        self.run.interrupt()

    def close(self) -> None:
        self.run.close()
