"""The models' unit tests (sql/<layer>/<model>.tests.yaml), one pytest test per case, and proof that
the cases catch a changed business rule."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ecommerce_assets.cli import main
from ecommerce_assets.definitions import load_project
from ecommerce_assets.errors import ModelError
from ecommerce_assets.paths import SQL_DIR
from ecommerce_assets.project.sources import RAW_TABLES
from ecommerce_assets.review.cases import CASES_SUFFIX, load_cases, run_cases

MODELS, MACROS = load_project()
CASES = load_cases(MODELS)


@pytest.fixture(scope="module")
def results():
    return {r.case.id: r for r in run_cases([*RAW_TABLES, *MODELS], MACROS, CASES)}


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_case(results, case_id):
    result = results[case_id]
    assert result.passed, result.report()


def test_every_computed_model_has_cases():
    assert sorted({m.name for m in MODELS} - {c.model.name for c in CASES}) == []


def _copy_sql(tmp_path: Path) -> Path:
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    return sql_dir


def test_a_moved_scoring_boundary_fails_a_case(tmp_path):
    sql_dir = _copy_sql(tmp_path)
    rfm = sql_dir / "intermediate" / "int_customer_rfm.sql"
    text = rfm.read_text()
    assert text.count("when recency_days <= 30 then 5") == 1
    rfm.write_text(text.replace("when recency_days <= 30 then 5", "when recency_days <= 31 then 5"))
    models, macros = load_project(sql_dir)
    results = list(run_cases([*RAW_TABLES, *models], macros, load_cases(models)))
    failed = [r for r in results if not r.passed]
    assert [r.case.id for r in failed] == ["int_customer_rfm::recency_boundaries"]
    report = failed[0].report()
    assert f"{rfm.with_name('int_customer_rfm' + CASES_SUFFIX)}:" in report
    assert "unexpected" in report and "missing" in report


def test_a_case_naming_an_unknown_column_is_an_error_with_its_line(tmp_path):
    sql_dir = _copy_sql(tmp_path)
    cases = sql_dir / "intermediate" / ("int_customer_rfm" + CASES_SUFFIX)
    cases.write_text(
        "- name: typo\n  vars: {analysis_date: 2024-12-31}\n  given:\n    stg_customers: [{customer_idd: 1}]\n"
        "  expect: []\n"
    )
    models, macros = load_project(sql_dir)
    with pytest.raises(
        ModelError, match=r"int_customer_rfm\.tests\.yaml:1: case typo: given stg_customers has no column customer_idd"
    ):
        list(run_cases([*RAW_TABLES, *models], macros, load_cases(models)))


def test_the_cli_runs_the_cases_and_counts_them(capsys):
    assert main(["test"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"{len(CASES)} cases passed, 0 failed"
