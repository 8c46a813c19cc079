"""The project's DuckDB SQL as Spark SQL (run/spark/transpile.py), with no Spark started: every model
and check transpiles, the DuckDB-only constructs are gone, and the definitions carry the engine."""

import pytest

from ecommerce_assets import cli
from ecommerce_assets.definitions import build_definitions, load_project
from ecommerce_assets.errors import ModelError
from ecommerce_assets.project.sources import RAW_TABLES
from ecommerce_assets.run.duckdb.catalog import bind
from ecommerce_assets.run.spark.transpile import to_spark, transpile_project
from ecommerce_assets.settings import Settings


@pytest.fixture(scope="module")
def transpiled():
    models, macros = load_project()
    nodes = [*RAW_TABLES, *models]
    return transpile_project(nodes, bind(nodes, macros).columns)


def test_every_model_and_check_has_spark_sql_without_duckdb_only_constructs(transpiled):
    texts = [*transpiled.models.values(), *transpiled.checks.values(), transpiled.analysis_date]
    for duckdb_only in ("getvariable", "exclude", "except (", "initcap", "percentile_approx", "dayname", "json_object"):
        assert [t for t in texts if duckdb_only in t.lower()] == [], duckdb_only
    assert "system.session.analysis_date" in transpiled.models["int_customer_rfm"]
    assert "PERCENTILE(revenue, 0.8)" in transpiled.models["fct_product_performance"]


@pytest.mark.parametrize(
    ("duckdb", "spark"),
    [
        ("select initcap(name) from t", "REGEXP_EXTRACT_ALL(name"),
        ("select dayname(d) from t", "DATE_FORMAT(d, 'EEEE')"),
        ("select isinf(x) from t", "ABS(x) = CAST('Infinity' AS DOUBLE)"),
        ("select hash(r) from (select 1 as a) as r", "HASH(r.*)"),
        ("select json_object('a', a) from t", "TO_JSON(NAMED_STRUCT('a', a), MAP('ignoreNullFields', 'false'))"),
        ("select * exclude (b) from s.t", "SELECT\n  a,\n  c\nFROM s.t"),
        ("select getvariable('run_started_at')", "system.session.run_started_at"),
    ],
)
def test_each_duckdb_only_construct_has_its_spark_form(duckdb, spark):
    assert spark in to_spark(duckdb, "x.sql", 1, {"s": {"t": ["a", "b", "c"]}})


def test_an_error_names_the_file_and_line():
    with pytest.raises(ModelError, match=r"^m.sql:7: cannot parse"):
        to_spark("select (", "m.sql", 7)
    with pytest.raises(ModelError, match=r"^m.sql: `\* exclude` reads s.u, whose columns are not known"):
        to_spark("select * exclude (b) from s.u", "m.sql", 7, {})


def test_compile_prints_spark_sql_under_that_engine(monkeypatch, capsys):
    monkeypatch.setenv("ECOMMERCE_ENGINE", "spark")
    assert cli.main(["compile", "--select", "int_customer_rfm"]) == 0
    out = capsys.readouterr().out
    assert "create table intermediate.int_customer_rfm__r<run> using parquet as" in out
    assert "system.session.analysis_date" in out and "getvariable" not in out


def test_the_assets_carry_the_kind_of_their_engine(tmp_path):
    settings = Settings.from_env({"ECOMMERCE_ENGINE": "spark", "ECOMMERCE_WAREHOUSE_PATH": str(tmp_path)})
    defs = build_definitions(settings)
    specs = list(defs.resolve_all_asset_specs())
    assert specs and all("spark" in s.kinds and "duckdb" not in s.kinds for s in specs)
    assert list(tmp_path.iterdir()) == []  # loading the definitions starts no Spark
