"""The engine's events as Dagster results: materializations with their metadata, check results."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg

from ecommerce_assets.markdown import escape_markdown, markdown_table
from ecommerce_assets.project.models import Model
from ecommerce_assets.run.adapter import Built, Checked


def to_dagster(
    event: Built | Checked, key: dg.AssetKey, catalog: Mapping[str, object] | None = None
) -> dg.MaterializeResult | dg.AssetCheckResult:
    return materialization(event, key, catalog) if isinstance(event, Built) else check_result(event, key)


def lineage_metadata(
    found: Mapping[str, Mapping[str, Sequence[tuple[str, str]]]], keys: Mapping[str, dg.AssetKey]
) -> dict[str, dg.TableColumnLineage]:
    """`lineage.column_lineage`'s answer (model -> column -> [(upstream node, column)]) for Dagster."""
    return {
        model: dg.TableColumnLineage(
            deps_by_column={
                column: [dg.TableColumnDep(asset_key=keys[node], column_name=c) for node, c in deps]
                for column, deps in columns.items()
                if deps
            }
        )
        for model, columns in found.items()
    }


# The run's phases as a run tag: on the run's page and in the run list, beside the status.
PHASES_TAG = "ecommerce/phases"


def phases_summary(
    start_s: float | None, engine: Mapping[str, float], events_s: float, concurrency: int
) -> tuple[str, str]:
    """Where the run's time went, every phase with its seconds: a log line, and the same in short
    for the run tag. `engine`: `engine.run_phases`; `start_s`: from the run's start to the step's
    (Dagster's own start, resources, plan); `events_s`: from the first asset event handed to Dagster
    to the last one written to its event log."""
    phases = {"Dagster start": start_s} if start_s is not None else {}
    phases |= {name: engine.get(name, 0.0) for name in ("loads", "models", "checks", "publish", "readers' copy")}
    phases["events"] = events_s
    short = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items())
    wall = engine.get("loads, models and checks", 0.0)
    line = (
        f"where the run's time went: {short}. Loads, models and checks are statement seconds, up to {concurrency} at a time "
        f"({wall:.2f} s in all); events: the asset events and check results written to Dagster's event log, "
        "while the readers' copy is written"
    )
    return line, short


def materialization(
    built: Built, key: dg.AssetKey, catalog: Mapping[str, object] | None = None
) -> dg.MaterializeResult:
    """Row count, column schema, a preview of the rows, the statement that ran, and the rest of
    the build's metadata (files as paths). `catalog`: entries that replace the table's own, e.g.
    the definition's column schema (with the constraints its checks guard) and column lineage."""
    stats, node = built.stats, built.node
    descriptions = node.columns if isinstance(node, Model) else {}  # a raw table's are its types
    descriptions = {c: escape_markdown(d) for c, d in descriptions.items() if d}
    # In the UI's order: the build's own entries (an analysis' charts first), the rows, the statement last.
    metadata: dict[str, object] = {
        key: dg.MetadataValue.path(str(value)) if isinstance(value, Path) else value
        for key, value in built.metadata.items()
        if key != "sql"
    }
    metadata |= {
        "preview": dg.MetadataValue.md(markdown_table(stats.preview_columns, stats.preview, total=stats.rows)),
        "dagster/row_count": stats.rows,
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name=c, type=t, description=descriptions.get(c)) for c, t in stats.columns]
        ),
        "duration_s": built.duration_s,
    }
    metadata |= catalog or {}
    if "sql" in built.metadata and isinstance(node, Model):
        metadata["sql"] = sql_block(warehouse_sql(node, built.metadata.get("analysis_date")))
    return dg.MaterializeResult(asset_key=key, metadata=metadata)


def warehouse_sql(model: Model, analysis_date: str | None) -> str:
    """The model's query as a user can run it on the warehouse (`duckdb -readonly <warehouse>`):
    the statement the run executed writes an internal `__build` relation and reads the run's
    unpublished ones, which are gone after the publish."""
    lines = [f"-- {model.table}: the query the run built it with, reading the published tables"]
    if analysis_date and "analysis_date" in model.sql:
        lines.append(f"set variable analysis_date = DATE '{analysis_date}';")
    if "run_started_at" in model.sql:
        lines.append("set variable run_started_at = now()::timestamp;  -- the run set its start time")
    return "\n".join([*lines, model.sql.strip()])


def check_result(checked: Checked, key: dg.AssetKey) -> dg.AssetCheckResult:
    check, outcome = checked.check, checked.outcome
    severity = dg.AssetCheckSeverity.ERROR if check.severity == "error" else dg.AssetCheckSeverity.WARN
    query = sql_block(checked.node.check_sql[check.name])
    if outcome is None:
        return dg.AssetCheckResult(
            asset_key=key,
            check_name=check.name,
            passed=False,
            severity=severity,
            metadata={"error": checked.error, "query": query},
            description=checked.error,
        )
    metadata = {"failing_rows": outcome.failing, "query": query}
    if outcome.note:
        metadata["note"] = outcome.note
    if checked.carried_from:
        metadata["carried_from_run"] = checked.carried_from  # the table and what it reads are unchanged since
    if outcome.failing and outcome.sample:
        sample = markdown_table(outcome.columns, outcome.sample, total=outcome.failing)
        metadata["failing_sample"] = dg.MetadataValue.md(sample)
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=check.name,
        passed=outcome.passed,
        severity=severity,
        metadata=metadata,
        description=None if outcome.passed else f"{outcome.failing} failing row(s): {check.description}",
    )


def sql_block(sql: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"```sql\n{sql}\n```")


def code_reference(path: Path, line: int = 1) -> dg.CodeReferencesMetadataValue:
    """Links the asset to its SQL file in the UI; the API is marked beta, the feature is stable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.CodeReferencesMetadataValue(
            code_references=[dg.LocalFileCodeReference(file_path=str(path), line_number=line)]
        )
