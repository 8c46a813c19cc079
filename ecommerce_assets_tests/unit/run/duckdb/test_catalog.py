"""Column schemas bound by DuckDB when the definitions load, and `ecommerce-assets compile`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest

from ecommerce_assets import cli
from ecommerce_assets.definitions import build_definitions, defs, load_project
from ecommerce_assets.errors import ModelError
from ecommerce_assets.paths import SQL_DIR
from ecommerce_assets.project.sources import RAW_TABLES
from ecommerce_assets.run.duckdb import catalog
from ecommerce_assets.run.duckdb.build import create_statement
from ecommerce_assets.run.duckdb.catalog import bind
from ecommerce_assets.settings import Settings


def schema(name: str) -> dg.TableSchema:
    return defs.resolve_asset_graph().get(dg.AssetKey(name)).metadata["dagster/column_schema"]


def test_every_definition_carries_the_schema_of_the_table_a_run_builds(built):
    wh, _ = built
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.get_all_asset_keys() if graph.get(k).group_name != "churn"]  # the SQL ones
    assert len(keys) == len(RAW_TABLES) + len(load_project()[0])
    for key in keys:
        node = graph.get(key)
        got = [(c.name, c.type) for c in node.metadata["dagster/column_schema"].columns]
        assert got == [r[:2] for r in wh.query(f"describe {node.metadata['dagster/table_name']}")], key


def test_model_columns_have_descriptions_and_the_constraints_their_checks_guard():
    columns = {c.name: c for c in schema("fct_customer_metrics").columns}
    assert columns["customer_id"].type == "BIGINT"
    assert columns["customer_id"].description == "Primary key\n\nFrom: stg_customers.customer_id"
    assert columns["customer_id"].constraints == dg.TableColumnConstraints(nullable=False, unique=True)
    assert columns["monetary_value"].constraints == dg.TableColumnConstraints(nullable=False, unique=False)
    assert columns["email"].constraints == dg.TableColumnConstraints(nullable=True, unique=False)
    assert columns["predicted_clv_12m"].type.startswith("DECIMAL(")
    assert columns["updated_at"].type == "TIMESTAMP"
    # A WARN check (NULL when invalid) does not make the column non-nullable.
    staging = {c.name: c for c in schema("stg_customers").columns}
    assert staging["email"].constraints == dg.TableColumnConstraints(nullable=True, unique=False)
    # Inherited from fct_customer_metrics' header.
    inherited = {c.name: c for c in schema("dim_customer_segments").columns}
    assert inherited["email"].description == "Cleaned email; NULL when invalid\n\nFrom: fct_customer_metrics.email"


def test_raw_columns_are_described_and_loaders_have_a_code_version():
    graph = defs.resolve_asset_graph()
    for raw in RAW_TABLES:
        columns = schema(raw.name).columns
        assert [c.name for c in columns] == [*raw.columns, "_loaded_at"]
        assert all(c.description for c in columns), raw.name
        assert graph.get(dg.AssetKey(raw.name)).code_version == raw.code_version
    raw = RAW_TABLES[0]
    assert replace(raw, column_descriptions={}).code_version == raw.code_version
    assert replace(raw, columns={**raw.columns, "email": "varchar(200)"}).code_version != raw.code_version
    assert len({r.code_version for r in RAW_TABLES}) == len(RAW_TABLES)


def test_compile_prints_the_statements_in_run_order_without_opening_the_warehouse(tmp_path):
    db = tmp_path / "warehouse" / "never.duckdb"
    env = {**os.environ, "ECOMMERCE_DUCKDB_PATH": str(db), "ECOMMERCE_OUTPUT_DIR": str(tmp_path / "output")}
    result = subprocess.run(
        [sys.executable, "-m", "ecommerce_assets.cli", "compile", "--select", "fct_customer_metrics"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    model = {m.name: m for m in load_project()[0]}["fct_customer_metrics"]
    out = result.stdout
    build = f"-- fct_customer_metrics ({model.path})\n{create_statement(model)};"
    assert out.startswith(build)
    for check in model.checks:
        block = f"-- fct_customer_metrics check {check.name} ({model.path})\n{model.check_sql[check.name]};"
        assert block in out
    assert out.count("\n-- ") == len(model.checks)  # nothing upstream or downstream
    assert not db.parent.exists() and not (tmp_path / "output").exists()


def test_compile_follows_the_plan_of_a_run(capsys):
    assert cli.main(["compile", "--select", "*fct_customer_metrics"]) == 0
    headers = [line.split(" ")[1] for line in capsys.readouterr().out.splitlines() if line.startswith("-- ")]
    builds = list(dict.fromkeys(h for h in headers))
    for before, after in [
        ("raw_customers", "stg_customers"),
        ("stg_customers", "int_customer_rfm"),
        ("int_customer_orders", "int_customer_rfm"),
        ("int_customer_rfm", "fct_customer_metrics"),
    ]:
        assert builds.index(before) < builds.index(after)
    assert "dim_customer_segments" not in builds


@pytest.fixture
def sql_copy(tmp_path) -> Path:
    return Path(shutil.copytree(SQL_DIR, tmp_path / "sql"))


def break_line(path: Path, old: str, new: str) -> int:
    """Replaces `old` (found once) by `new`; returns its file line."""
    text = path.read_text()
    assert text.count(old) == 1
    path.write_text(text.replace(old, new))
    return text[: text.index(old)].count("\n") + 1


def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"ECOMMERCE_DUCKDB_PATH": str(tmp_path / "never.duckdb")})


def test_an_unknown_column_in_a_model_fails_the_load_with_the_file_and_line(tmp_path, sql_copy):
    path = sql_copy / "intermediate" / "int_customer_rfm.sql"
    line = break_line(path, "order_total_sum as monetary_value", "order_totl_sum as monetary_value")
    with pytest.raises(ModelError, match=rf"^{path}:{line}: Binder Error: .*order_totl") as e:
        build_definitions(settings(tmp_path), sql_dir=sql_copy)
    assert f"LINE {line}:" in str(e.value)
    assert not (tmp_path / "never.duckdb").exists()


@pytest.mark.parametrize(
    "old, new, check",
    [
        ("where predicted_clv_12m < 0", "where predicted_clv_12mm < 0", "assert_positive_clv"),
        ("or frequency_score not between", "or frequency_scor not between", "assert_rfm_scores_valid"),
        ("  email: {description: Cleaned", "  emial: {checks: [not_null], description: Cleaned", "not_null_emial"),
    ],
)
def test_an_unknown_column_in_a_check_fails_the_load_with_the_file_and_line(tmp_path, sql_copy, old, new, check):
    path = sql_copy / "marts" / "fct_customer_metrics.sql"
    line = break_line(path, old, new)
    with pytest.raises(ModelError, match=rf"^{path}:{line}: check {check}: Binder Error"):
        build_definitions(settings(tmp_path), sql_dir=sql_copy)


def test_bind_returns_each_tables_columns_in_order():
    models, macros = load_project()
    bound = bind([*RAW_TABLES, *models], macros, cache=False)
    assert bound.columns["raw_orders"][-1] == ("_loaded_at", "TIMESTAMP")
    assert bound.columns["fct_customer_metrics_incremental"][-2:] == [
        ("row_hash", "UBIGINT"),
        ("updated_at", "TIMESTAMP"),
    ]
    assert bind([*RAW_TABLES, *models], macros) == bound  # from the cache or not


def test_a_successful_binding_is_cached_a_failing_one_never(tmp_path, sql_copy, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    models, macros = load_project(sql_copy)
    nodes = [*RAW_TABLES, *models]
    bound = bind(nodes, macros)
    (stored,) = (tmp_path / "cache" / "ecommerce-assets" / "catalog").glob("*.json")
    with monkeypatch.context() as m:
        m.setattr(catalog.duckdb, "connect", lambda **_: pytest.fail("bound again"))
        assert bind(nodes, macros) == bound
    stored.write_text("{damaged")
    assert bind(nodes, macros) == bound
    path = sql_copy / "intermediate" / "int_customer_rfm.sql"
    line = break_line(path, "order_total_sum as monetary_value", "order_totl_sum as monetary_value")
    for _ in range(2):
        with pytest.raises(ModelError, match=rf"^{path}:{line}: "):
            bind([*RAW_TABLES, *load_project(sql_copy)[0]], macros)
    assert len(list(stored.parent.glob("*.json"))) == 1


@pytest.mark.parametrize("command", [["compile"], ["build", "--select", "stg_orders"], ["check"]])
def test_the_cli_reports_a_broken_model_in_one_line(tmp_path, sql_copy, monkeypatch, capsys, command):
    path = sql_copy / "intermediate" / "int_customer_rfm.sql"
    line = break_line(path, "order_total_sum as monetary_value", "order_totl_sum as monetary_value")
    monkeypatch.setattr(cli, "load_definitions", lambda: build_definitions(settings(tmp_path), sql_dir=sql_copy))
    assert cli.main(command) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (message,) = captured.err.splitlines()
    assert message.startswith(f'{path}:{line}: Binder Error: Referenced column "order_totl_sum" not found')
    assert not (tmp_path / "never.duckdb").exists()
