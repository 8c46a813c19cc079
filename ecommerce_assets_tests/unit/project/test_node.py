"""Raw tables and models are both Nodes: the run asks them what they read, how they are stored and checked."""

from ecommerce_assets.definitions import load_project
from ecommerce_assets.project.node import Node
from ecommerce_assets.project.sources import RAW_TABLES


def test_both_kinds_of_node_answer_what_the_run_asks_of_a_node():
    models, _ = load_project()
    assert all(isinstance(n, Node) for n in [*RAW_TABLES, *models])
    raw = RAW_TABLES[0]
    assert (raw.deps, raw.materialized, raw.maintained) == ((), "table", False)
    assert [c.name for c in raw.checks] == ["no_sudden_row_drop"]


def test_a_raw_tables_code_version_follows_its_columns_and_the_loader_version_not_its_descriptions(monkeypatch):
    from dataclasses import replace

    from ecommerce_assets.project import sources

    raw = RAW_TABLES[0]
    described = replace(raw, column_descriptions=dict.fromkeys(raw.columns, "another description"))
    assert described.code_version == raw.code_version
    assert replace(raw, columns={**raw.columns, "extra": "varchar"}).code_version != raw.code_version
    monkeypatch.setattr(sources, "LOADER_VERSION", sources.LOADER_VERSION + "+1")
    assert replace(raw).code_version != raw.code_version
