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
