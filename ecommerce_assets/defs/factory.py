"""The one place that builds assets: raw tables and SQL models -> one subsettable multi-asset.

Every model is its own asset (own key, group, tags, materializations and checks in the UI,
selectable alone), but a run executes all selected ones in ONE step on ONE DuckDB connection:
each extra step costs a process, event-log writes and a reconnect, which on small data is most of
the run. The engine (run/engine.py) runs the step through an engine's adapter (run/adapter.py); this
module only wires it to Dagster.
"""

import time
from collections.abc import Iterator, Mapping, Sequence
from functools import partial

import dagster as dg

from ecommerce_assets.defs.events import PHASES_TAG, lineage_metadata, phases_summary, to_dagster
from ecommerce_assets.defs.resources import PipelineConfig
from ecommerce_assets.defs.translator import Translator
from ecommerce_assets.errors import RunFailed, SettingError
from ecommerce_assets.project.models import Model, load_macros
from ecommerce_assets.project.sources import RAW_TABLES, RawTable
from ecommerce_assets.run.adapter import Adapter, Project, Selection
from ecommerce_assets.run.duckdb.adapter import AfterBuild, DuckDBAdapter
from ecommerce_assets.run.duckdb.catalog import Catalog, bind, model_lineage
from ecommerce_assets.run.engine import execute
from ecommerce_assets.run.pump import pump
from ecommerce_assets.run.spark.adapter import SparkAdapter
from ecommerce_assets.run.spark.transpile import transpile_project
from ecommerce_assets.settings import Settings, require_data_dir


def build_warehouse(
    models: Sequence[Model],
    settings: Settings,
    raw_tables: Sequence[RawTable] = RAW_TABLES,
    after_build: Mapping[str, AfterBuild] | None = None,
    translator: Translator | None = None,
    name: str = "warehouse",
    macros: Sequence[str] | None = None,
    catalog: Catalog | None = None,
) -> dg.AssetsDefinition:
    """`models` must be resolved and in dependency order (`models.resolve_deps`); `macros`
    defaults to those of the project's sql/macros/. `catalog` (the column schemas) defaults to
    binding every model and check in DuckDB (`catalog.bind`), which fails on a broken one."""
    nodes = [*raw_tables, *models]
    # The charts are DuckDB's alone (docs/spark.md): a Spark run neither draws nor warms them up.
    hooks = (after_build or {}) if settings.engine == "duckdb" else {}
    project = Project(nodes, load_macros() if macros is None else macros, hooks)
    translator = translator or Translator(freshness_hours=settings.freshness_hours, engine=settings.engine)
    keys = {n.name: translator.asset_key(n) for n in nodes}
    names = {key: name for name, key in keys.items()}
    raw_names = frozenset(r.name for r in raw_tables)
    catalog = bind(nodes, project.macros) if catalog is None else catalog
    # On Spark, every model and check is transpiled now: one Spark cannot run fails the load, naming its file.
    transpiled = transpile_project(nodes, catalog.columns) if settings.engine == "spark" else None
    # At load time (~0.1 s), not after a run: each column's upstream columns are in its description
    # on the asset page before any run (the open-source UI draws no `dagster/column_lineage`).
    found = model_lineage(models, catalog)
    specs, check_specs = translator.specs(nodes, catalog, found)
    lineage = lineage_metadata(found, keys)
    # The definition's column schema (constraints, lineage) replaces the table's own on each
    # materialization, with the column lineage for a Dagster+ deployment, which draws it.
    catalog_metadata: dict[str, dict[str, object]] = {}
    for node, spec in zip(nodes, specs, strict=True):
        entries = catalog_metadata.setdefault(node.name, {})
        if schema := spec.metadata.get("dagster/column_schema"):
            entries["dagster/column_schema"] = schema
        if node.name in lineage:
            entries["dagster/column_lineage"] = lineage[node.name]

    @dg.multi_asset(
        name=name,
        specs=specs,
        check_specs=check_specs,
        can_subset=True,
        description=f"Loads the raw exports and builds every selected SQL model and check on {settings.engine}.",
        # The DuckDBWarehouse or SparkWarehouse resource of definitions.py.
        required_resource_keys={settings.engine},
    )
    def warehouse(context: dg.AssetExecutionContext, config: PipelineConfig):
        selection = Selection(
            frozenset(names[k] for k in context.selected_asset_keys),
            frozenset((names[k.asset_key], k.name) for k in context.selected_asset_check_keys),
        )
        options = config.run_options(settings)
        if selection.assets & raw_names:
            try:
                require_data_dir(str(options.data_dir), "data_dir" if config.data_dir else "ECOMMERCE_DATA_DIR")
            except SettingError as e:
                raise dg.Failure(description=str(e)) from None
        step = context.get_step_execution_context()
        record = context.instance.get_run_record_by_id(context.run.run_id)
        start_s = time.time() - record.start_time if record and record.start_time else None

        def results(adapter: Adapter) -> Iterator:
            events_started = None
            work = partial(execute, adapter, project, selection)
            try:
                for event in pump(work, context.log, adapter.interrupt):
                    events_started = events_started or time.perf_counter()
                    result = to_dagster(event, keys[event.node.name], catalog_metadata.get(event.node.name))
                    if isinstance(result, dg.AssetCheckResult):
                        # Yielded as a result, a check costs two event-log writes: its evaluation
                        # and an output nothing reads (the check outputs of a subsettable asset
                        # are optional). The evaluation alone, resolved as Dagster resolves a
                        # result, is one write: ~70 fewer per run.
                        result = result.to_asset_check_evaluation(step)
                    yield result
                if adapter.phases:
                    # Each yield returns once Dagster has written the event: the loop's end is the events' end.
                    events_s = time.perf_counter() - events_started if events_started else 0.0
                    line, short = phases_summary(start_s, adapter.phases, events_s, options.concurrency)
                    context.log.info(line)
                    context.instance.add_run_tags(context.run.run_id, {PHASES_TAG: short})
            except RunFailed as e:
                raise dg.Failure(description=str(e)) from None
            finally:
                adapter.close()

        if transpiled is not None:
            session = context.resources.spark.session()
            yield from results(SparkAdapter(session, options, transpiled, run_id=context.run.run_id))
            return
        with context.resources.duckdb.connect(holder=context.run.run_id) as (con, died):
            if died:
                mark_dead_run(context, died)
            yield from results(DuckDBAdapter(con, options, run_id=context.run.run_id))

    return warehouse


def mark_dead_run(context: dg.AssetExecutionContext, run_id: str) -> None:
    """The run that held the warehouse last and never released it died (SIGKILL, OOM, a lost
    machine): marked failed so it does not stay STARTED. Its unpublished tables are dropped by
    this run before it starts (publish.clean_up)."""
    dead = context.instance.get_run_by_id(run_id)
    if dead is not None and not dead.is_finished:
        context.instance.report_run_failed(
            dead, message=f"The run's process died while it held the warehouse; found by run {context.run.run_id}."
        )
        context.log.warning(
            f"run {run_id} died while it held the warehouse: marked failed, nothing of it was published"
        )
