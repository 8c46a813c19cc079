"""The model-file format never fails silently: each mistake is an error naming the file and line.

Real files in temporary directories; one test per mistake that used to pass unnoticed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from threading import Event
from types import SimpleNamespace

import dagster as dg
import duckdb
import pytest

from ecommerce_assets.definitions import build_definitions
from ecommerce_assets.errors import ModelError, RunFailed
from ecommerce_assets.paths import SQL_DIR
from ecommerce_assets.project.models import load_models, resolve_deps
from ecommerce_assets.project.sources import RAW_TABLES
from ecommerce_assets.run.adapter import Checked, Project, Selection
from ecommerce_assets.run.duckdb.adapter import DuckDBAdapter
from ecommerce_assets.run.engine import execute
from ecommerce_assets.run.options import RunOptions
from ecommerce_assets_tests.conftest import DATA, make_warehouse

DATA_DIR = DATA
QUIET = SimpleNamespace(info=lambda m: None, warning=lambda m: None, error=lambda m: None)

SOURCES = {r.name: "raw" for r in RAW_TABLES}

REVENUE_BY_COUNTRY = """\
/*
description: Completed revenue per country.
columns:
  country:
    description: Country code
    checks: [not_null]
checks:
  - name: revenue_not_negative
    sql: |
      select * from @this_model where revenue < 0
*/


select country, sum(o.shipping_cost) as revenue
from staging.stg_orders as o
join staging.stg_customers using (customer_id)
group by country;
"""


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_error(sql_dir: Path) -> str:
    with pytest.raises(ModelError) as error:
        resolve_deps(load_models(sql_dir), SOURCES)
    return str(error.value)


def at(path: Path, line: int) -> str:
    """The start of an error message about `path` at `line`, as a regex."""
    return re.escape(f"{path}:{line}: ")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    """A small project with a new layer, read once (read-only for the tests)."""
    sql = tmp_path_factory.mktemp("project") / "sql"
    write(sql, "macros/initcap.sql", "create or replace macro initcap(s) as upper(s)")
    write(sql, "staging/stg_orders.sql", "select * from raw.raw_orders")
    write(sql, "staging/stg_customers.sql", "select * from raw.raw_customers")
    write(sql, "finance/revenue_by_country.sql", REVENUE_BY_COUNTRY)
    write(sql, "finance/dated.sql", "select * from staging.stg_orders where order_date <= GETVARIABLE('analysis_date')")
    write(
        sql,
        "finance/dated_check.sql",
        "/*\nchecks:\n  - {name: not_future, sql: \"select * from @this_model where d > GetVariable('analysis_date')\"}\n*/\n"
        "select getvariable('run_started_at') as d",
    )
    write(
        sql,
        "finance/commented_check.sql",
        "/*\nchecks:\n  - name: no_rows\n    sql: |\n      select * /* every row fails */ from @this_model\n*/\nselect 1 as x",
    )
    return {m.name: m for m in resolve_deps(load_models(sql), SOURCES)}


def test_a_new_folder_is_a_layer_with_its_checks(project):
    model = project["revenue_by_country"]
    assert (model.layer, model.table, model.materialized) == ("finance", "finance.revenue_by_country", "table")
    assert project["stg_orders"].materialized == "view"
    assert model.description == "Completed revenue per country." and model.columns["country"] == "Country code"
    assert "finance" in model.tags and set(model.deps) == {"stg_orders", "stg_customers"}
    assert [(c.name, c.kind, c.sql_line) for c in model.checks] == [
        ("not_null_country", "not_null", None),
        ("revenue_not_negative", "sql", 10),
    ]
    # @this_model is the check's own table, so the check reads no other table.
    assert model.check_sql["revenue_not_negative"] == "select * from finance.revenue_by_country where revenue < 0"
    assert model.check_deps["revenue_not_negative"] == ()
    # Model.sql is the file from sql_line on: blank lines after the header counted, ';' dropped.
    lines = model.path.read_text().splitlines()
    assert model.sql_line == 14 and model.sql + ";" == "\n".join(lines[13:])
    assert not model.uses_analysis_date


def test_getvariable_in_any_case_reads_the_analysis_date(project):
    assert project["dated"].uses_analysis_date  # GETVARIABLE in the model's SQL
    assert project["dated_check"].uses_analysis_date  # GetVariable in a check only; run_started_at is another variable


def test_a_block_comment_inside_a_checks_sql_stays_in_the_header(project):
    model = project["commented_check"]
    assert model.sql == "select 1 as x"
    assert model.check_sql["no_rows"] == "select * /* every row fails */ from finance.commented_check"


def test_the_order_is_the_same_whatever_order_the_models_come_in(project):
    models = list(project.values())
    order = [m.name for m in resolve_deps(models, SOURCES)]
    assert [m.name for m in resolve_deps(models[::-1], SOURCES)] == order
    assert order.index("stg_orders") < order.index("revenue_by_country")


def test_an_unknown_header_key_names_the_file_and_line(tmp_path):
    path = write(tmp_path, "marts/x.sql", "/*\ndescription: x\nmaterialised: table\n*/\nselect 1 as id")
    assert re.match(
        at(path, 3) + r"materialised: unknown key 'materialised' \(use one of description, tags", load_error(tmp_path)
    )


def test_a_comma_in_a_flow_mapping_description_is_an_unknown_key(tmp_path):
    # YAML reads `{description: Country, upper-cased}` as two keys; the description was cut silently.
    path = write(
        tmp_path, "marts/x.sql", "/*\ncolumns:\n  country: {description: Country, upper-cased}\n*/\nselect 1 as country"
    )
    assert re.match(at(path, 3) + r"columns\.country\.upper-cased: unknown key", load_error(tmp_path))


def test_a_wrong_type_names_the_file_and_line(tmp_path):
    path = write(tmp_path, "marts/x.sql", "/*\ndescription: x\n\ntags: 5\n*/\nselect 1 as id")
    assert re.match(at(path, 4) + r"tags: Input should be a valid list", load_error(tmp_path))


def test_an_unknown_check_kind_names_the_file_and_line(tmp_path):
    path = write(
        tmp_path,
        "marts/x.sql",
        "/*\ncolumns:\n  customer_id:\n    checks:\n      - not_null\n      - uniq\n*/\nselect 1 as customer_id",
    )
    assert re.match(
        at(path, 6) + r"columns\.customer_id\.checks\[1\]: unknown check kind 'uniq' \(use one of unique, not_null",
        load_error(tmp_path),
    )


def test_a_key_written_twice_is_an_error(tmp_path):
    path = write(tmp_path, "marts/x.sql", "/*\nchecks: []\ndescription: x\nchecks: []\n*/\nselect 1 as id")
    assert re.match(at(path, 4) + "key 'checks' is written twice", load_error(tmp_path))


def test_an_unclosed_header_names_the_line_it_opens_on(tmp_path):
    # Block comments nest: the `*/` closes the `/*` of the description, the header stays open.
    path = write(tmp_path, "marts/x.sql", "\n/*\ndescription: paths like data/*.csv\n*/\nselect 1 as id\n")
    assert re.match(at(path, 2) + "the header comment opened here never closes", load_error(tmp_path))


def test_a_sql_parse_error_names_the_file_line(tmp_path):
    path = write(tmp_path, "marts/x.sql", "/*\ndescription: x\n*/\n\nselect id,\n    count(*\nfrom t\n")
    assert re.match(at(path, 7) + "cannot parse the SQL", load_error(tmp_path))


def test_a_parse_error_in_a_checks_sql_names_the_file_line(tmp_path):
    header = "/*\nchecks:\n  - name: c\n    sql: |\n\n      select *\n      from @this_model\n      where (\n*/\nselect 1 as id"
    path = write(tmp_path, "marts/x.sql", header)
    assert re.match(at(path, 8) + "cannot parse the SQL", load_error(tmp_path))


def test_two_statements_in_a_model_are_an_error(tmp_path):
    path = write(tmp_path, "marts/x.sql", "select 1 as id;\nselect 2 as id;\n")
    assert re.match(at(path, 1) + "expected one SQL statement, found 2", load_error(tmp_path))


def test_no_model_files_is_an_error(tmp_path):
    write(tmp_path, "macros/m.sql", "create macro m() as 1")
    write(tmp_path, "staging/README.md", "no models yet")
    assert re.match(re.escape(f"{tmp_path}: no model files found"), load_error(tmp_path))


def test_a_file_nested_below_a_layer_is_an_error(tmp_path):
    write(tmp_path, "staging/stg_a.sql", "select 1 as id")
    nested = write(tmp_path, "staging/old/stg_b.sql", "select 1 as id")
    assert re.match(re.escape(f"{nested}: not read: a model file belongs directly in"), load_error(tmp_path))


def test_a_dependency_cycle_is_an_error(tmp_path):
    write(tmp_path, "marts/a.sql", "select * from marts.b")
    write(tmp_path, "marts/b.sql", "select * from marts.a")
    assert re.match(r"dependency cycle: (a -> b -> a|b -> a -> b) \(", load_error(tmp_path))


# --- the same files through Dagster and the engine ---------------------------------------------


def test_a_new_sql_folder_is_a_new_group_that_builds_and_checks_without_python(tmp_path):
    sql = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql)
    write(sql, "finance/revenue_by_country.sql", REVENUE_BY_COUNTRY)
    wh = make_warehouse(tmp_path)
    wh.defs = build_definitions(wh.settings, sql_dir=sql)
    graph = wh.defs.resolve_asset_graph()
    key = dg.AssetKey("revenue_by_country")
    assert graph.get(key).group_name == "finance"
    assert {c.name for c in graph.get_check_keys_for_assets({key})} == {"not_null_country", "revenue_not_negative"}
    result = wh.run(selection=sorted(dg.AssetSelection.from_string("*revenue_by_country").resolve(graph)))
    assert result.success
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations() if e.asset_key == key}
    assert evaluations == {"not_null_country": True, "revenue_not_negative": True}
    assert wh.scalar("select count(*) from finance.revenue_by_country") == len(
        wh.query("select distinct country from staging.stg_customers")
    )


def _run_project(tmp_path: Path, sql: Path) -> tuple[list, Exception | None]:
    models = resolve_deps(load_models(sql), SOURCES)
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    adapter = DuckDBAdapter(con, RunOptions(data_dir=DATA_DIR, output_dir=tmp_path / "output"))
    events, error = [], None
    try:
        nodes = [*RAW_TABLES, *models]
        for event in execute(adapter, Project(nodes), Selection.everything(nodes), QUIET, Event()):
            events.append(event)
    except RunFailed as e:
        error = e
    finally:
        adapter.close()
        con.close()
    return events, error


def test_a_sql_error_at_run_time_names_the_file_and_its_line(tmp_path):
    sql = tmp_path / "sql"
    path = write(
        sql,
        "marts/totals.sql",
        "/*\ndescription: Totals.\n*/\nselect\n    order_id,\n    sum(order_totl) as t\nfrom raw.raw_orders\ngroup by 1",
    )
    _, error = _run_project(tmp_path, sql)
    assert error is not None and f"{path}:6: Binder Error" in str(error) and "LINE 6:" in str(error)


def test_a_checks_sql_error_at_run_time_names_the_file_and_its_line(tmp_path):
    sql = tmp_path / "sql"
    path = write(
        sql,
        "marts/totals.sql",
        "/*\nchecks:\n  - name: no_gaps\n    sql: |\n      select *\n      from @this_model\n      where missing_column > 0\n*/\n"
        "select order_id from raw.raw_orders",
    )
    events, error = _run_project(tmp_path, sql)
    assert error is None
    (checked,) = [e for e in events if isinstance(e, Checked) and e.check.name == "no_gaps"]
    assert checked.outcome is None and f"{path}:7: Binder Error" in checked.error
