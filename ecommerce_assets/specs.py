"""Raw tables and models -> Dagster's AssetSpec and AssetCheckSpec.

`Translator` is the one place that decides how a model looks in Dagster (key, group, tags,
description, owners, freshness policy, metadata), in the spirit of dagster-dbt's
DagsterDbtTranslator: subclass it and override a method to change one aspect, then pass it to
`factory.build_warehouse`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import dagster as dg

from ecommerce_assets.checks import CheckDecl
from ecommerce_assets.models import Model, default_owner
from ecommerce_assets.raw import RawTable
from ecommerce_assets.resources import DEFAULT_FRESHNESS_HOURS
from ecommerce_assets.results import code_reference, sql_block


class Translator:
    kinds = frozenset({"duckdb", "sql"})

    def __init__(self, freshness_hours: int = DEFAULT_FRESHNESS_HOURS) -> None:
        self.freshness_hours = freshness_hours

    def asset_key(self, node: RawTable | Model) -> dg.AssetKey:
        return dg.AssetKey(node.name)

    def group_name(self, node: RawTable | Model) -> str:
        return node.layer

    def description(self, node: RawTable | Model) -> str:
        return node.description

    def tags(self, model: Model) -> dict[str, str]:
        return dict.fromkeys(model.tags, "")

    def owners(self, node: RawTable | Model) -> list[str]:
        """The header's `owner:`, else the layer's default (models.OWNER_BY_LAYER)."""
        return [node.owner if isinstance(node, Model) else default_owner(node.layer)]

    def freshness_policy(self, node: RawTable | Model) -> dg.FreshnessPolicy | None:
        """Every published table fails its freshness after `freshness_hours` without a
        materialization (ECOMMERCE_FRESHNESS_HOURS: the daily schedule's day plus a margin)."""
        return dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=self.freshness_hours))

    def raw_spec(self, raw: RawTable) -> dg.AssetSpec:
        columns = [dg.TableColumn(name=c, type=t) for c, t in raw.columns.items()]
        return dg.AssetSpec(
            key=self.asset_key(raw),
            group_name=self.group_name(raw),
            description=self.description(raw),
            kinds={"duckdb"},
            owners=self.owners(raw),
            freshness_policy=self.freshness_policy(raw),
            skippable=True,
            metadata={"dagster/table_name": raw.table, "dagster/column_schema": dg.TableSchema(columns=columns)},
        )

    def model_spec(self, model: Model, keys: dict[str, dg.AssetKey]) -> dg.AssetSpec:
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
                "materialized": model.materialized,
                "dagster/code_references": code_reference(model.path),
            },
        )

    def check_spec(self, model: Model, check: CheckDecl, keys: dict[str, dg.AssetKey]) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(
            check.name,
            asset=keys[model.name],
            description=f"{check.description} [{check.severity.upper()}{', blocking' if check.blocking else ''}]",
            blocking=check.blocking,
            additional_deps=[keys[t] for t in model.check_deps[check.name]],
            metadata={"severity": check.severity, "kind": check.kind, "query": sql_block(model.check_sql[check.name])},
        )

    def specs(self, nodes: Sequence[RawTable | Model]) -> tuple[list[dg.AssetSpec], list[dg.AssetCheckSpec]]:
        """Every node's asset spec and every check's spec."""
        keys = {n.name: self.asset_key(n) for n in nodes}
        models = [n for n in nodes if isinstance(n, Model)]
        assets = [self.raw_spec(n) if isinstance(n, RawTable) else self.model_spec(n, keys) for n in nodes]
        return assets, [self.check_spec(m, c, keys) for m in models for c in m.checks]
