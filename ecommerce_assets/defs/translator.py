"""Raw tables and models -> Dagster's AssetSpec and AssetCheckSpec.

`Translator` is the one place that decides how a model looks in Dagster (key, group, tags,
description, owners, freshness policy, metadata), in the spirit of dagster-dbt's
DagsterDbtTranslator: subclass it and override a method to change one aspect, then pass it to
`factory.build_warehouse`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

import dagster as dg

from ecommerce_assets.defs.events import code_reference, sql_block
from ecommerce_assets.markdown import escape_markdown
from ecommerce_assets.project.checks import CheckDecl
from ecommerce_assets.project.models import Model, default_owner
from ecommerce_assets.project.sources import RawTable
from ecommerce_assets.run.duckdb.catalog import Catalog
from ecommerce_assets.settings import DEFAULT_FRESHNESS_HOURS

# Model -> column -> its upstream (node, column) pairs: `catalog.model_lineage`'s answer.
Lineage = Mapping[str, Mapping[str, Sequence[tuple[str, str]]]]


class Translator:
    def __init__(self, freshness_hours: int = DEFAULT_FRESHNESS_HOURS, engine: str = "duckdb") -> None:
        self.freshness_hours = freshness_hours
        # The kind shown on each asset: the engine its table is built on (ECOMMERCE_ENGINE).
        self.engine = engine
        self.kinds = frozenset({engine, "sql"})

    def asset_key(self, node: RawTable | Model) -> dg.AssetKey:
        return dg.AssetKey(node.name)

    def group_name(self, node: RawTable | Model) -> str:
        return node.layer

    def description(self, node: RawTable | Model) -> str:
        return escape_markdown(node.description)

    def tags(self, model: Model) -> dict[str, str]:
        return dict.fromkeys(model.tags, "")

    def owners(self, node: RawTable | Model) -> list[str]:
        """The header's `owner:`, else the layer's default (models.OWNER_BY_LAYER)."""
        return [node.owner if isinstance(node, Model) else default_owner(node.layer)]

    def freshness_policy(self, node: RawTable | Model) -> dg.FreshnessPolicy | None:
        """Every published table fails its freshness after `freshness_hours` without a
        materialization (ECOMMERCE_FRESHNESS_HOURS: the daily schedule's day plus a margin)."""
        return dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=self.freshness_hours))

    def column_descriptions(self, node: RawTable | Model) -> dict[str, str]:
        """A model's from its header (and upstream headers); a raw table's from project/sources.py."""
        return node.descriptions if isinstance(node, RawTable) else node.columns

    def column_constraints(self, node: RawTable | Model, column: str) -> dg.TableColumnConstraints:
        """What the column's ERROR checks guard: `not_null` -> not nullable, `unique` -> unique. A WARN
        check does not count: stg_customers.email is NULL when invalid, and its not_null only warns."""
        kinds = {c.kind for c in node.checks if c.column == column and c.blocking}
        return dg.TableColumnConstraints(nullable="not_null" not in kinds, unique="unique" in kinds)

    def column_description(
        self, node: RawTable | Model, column: str, upstream: Sequence[tuple[str, str]]
    ) -> str | None:
        """The column's description as written (escaped for the UI's markdown), then the columns it
        is computed from (`lineage.column_lineage`)."""
        text = escape_markdown(self.column_descriptions(node).get(column) or "")
        if upstream:
            text += ("\n\n" if text else "") + "From: " + ", ".join(f"{n}.{c}" for n, c in upstream)
        return text or None

    def column_schema(
        self, node: RawTable | Model, catalog: Catalog | None, lineage: Lineage | None = None
    ) -> dg.TableSchema | None:
        """The columns and types DuckDB binds (`catalog.bind`), with descriptions, upstream columns
        and constraints. Without a catalog: a raw table's declared columns, nothing for a model."""
        columns = catalog.columns.get(node.name) if catalog else None
        if columns is None:
            if not isinstance(node, RawTable):
                return None
            columns = list(node.table_columns.items())
        upstream = (lineage or {}).get(node.name, {})
        return dg.TableSchema(
            columns=[
                dg.TableColumn(
                    name=c,
                    type=t,
                    description=self.column_description(node, c, upstream.get(c, ())),
                    constraints=self.column_constraints(node, c),
                )
                for c, t in columns
            ]
        )

    def raw_spec(self, raw: RawTable, catalog: Catalog | None = None) -> dg.AssetSpec:
        return dg.AssetSpec(
            key=self.asset_key(raw),
            group_name=self.group_name(raw),
            description=self.description(raw),
            kinds={self.engine},
            code_version=raw.code_version,
            owners=self.owners(raw),
            freshness_policy=self.freshness_policy(raw),
            skippable=True,
            metadata={"dagster/table_name": raw.table, "dagster/column_schema": self.column_schema(raw, catalog)},
        )

    def model_spec(
        self,
        model: Model,
        keys: dict[str, dg.AssetKey],
        catalog: Catalog | None = None,
        lineage: Lineage | None = None,
    ) -> dg.AssetSpec:
        schema = self.column_schema(model, catalog, lineage)
        return dg.AssetSpec(
            key=keys[model.name],
            deps=[keys[d] for d in model.deps],
            group_name=self.group_name(model),
            description=self.description(model),
            tags=self.tags(model),
            kinds=set(self.kinds),
            code_version=model.code_version,
            owners=self.owners(model),
            freshness_policy=self.freshness_policy(model),
            skippable=True,
            metadata={
                "dagster/table_name": model.table,
                # Not "materialized": beside "Never materialized" that read like a status.
                "built as": model.materialized,
                "dagster/code_references": code_reference(model.path),
                **({"dagster/column_schema": schema} if schema else {}),
            },
        )

    def check_spec(self, model: RawTable | Model, check: CheckDecl, keys: dict[str, dg.AssetKey]) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(
            check.name,
            asset=keys[model.name],
            # A check spec has no severity of its own in Dagster (only its results do): the description
            # carries it, first, where a reader of the check's page starts.
            description=f"{check.severity.upper()}{' (blocking)' if check.blocking else ''}: {escape_markdown(check.description)}",
            blocking=check.blocking,
            additional_deps=[keys[t] for t in model.check_deps[check.name]],
            metadata={"severity": check.severity, "kind": check.kind, "query": sql_block(model.check_sql[check.name])},
        )

    def specs(
        self, nodes: Sequence[RawTable | Model], catalog: Catalog | None = None, lineage: Lineage | None = None
    ) -> tuple[list[dg.AssetSpec], list[dg.AssetCheckSpec]]:
        """Every node's asset spec and every check's spec; `catalog` gives the column schemas,
        `lineage` (`catalog.model_lineage`) each column's upstream columns."""
        keys = {n.name: self.asset_key(n) for n in nodes}
        assets = [
            self.raw_spec(n, catalog) if isinstance(n, RawTable) else self.model_spec(n, keys, catalog, lineage)
            for n in nodes
        ]
        return assets, [self.check_spec(n, c, keys) for n in nodes for c in n.checks]
