"""The churn model: point-in-time training data, the time split, the assets and their checks."""

import datetime as dt
import os
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import joblib
import numpy as np
import pytest

from ecommerce_assets.definitions import load_project
from ecommerce_assets.generate import generate
from ecommerce_assets.ml.churn import features as churn_features
from ecommerce_assets.ml.churn import model as churn_model
from ecommerce_assets_tests.conftest import make_warehouse

CUSTOMERS = 3000
CHURN_ASSETS = {"churn_training_data", "churn_model", "churn_model_evaluation", "churn_scores"}


# --- pure logic -------------------------------------------------------------------------------


def test_month_ends():
    assert churn_features.month_ends(dt.date(2024, 1, 31), dt.date(2024, 4, 29)) == [
        dt.date(2024, 1, 31),
        dt.date(2024, 2, 29),
        dt.date(2024, 3, 31),
    ]
    assert churn_features.month_ends(dt.date(2024, 1, 1), dt.date(2024, 1, 30)) == []


def test_holdout_is_the_latest_complete_window_and_training_windows_end_before_it():
    c = churn_features.plan_cutoffs(dt.date(2022, 1, 15), dt.date(2024, 12, 31), train_cutoffs=6)
    window = dt.timedelta(days=churn_features.LABEL_DAYS)
    assert c.holdout == dt.date(2024, 9, 30)  # 2024-10-31 + 90 days is after the data's end
    assert len(c.train) == 6 and c.train[-1] == dt.date(2024, 6, 30)
    assert all(t + window <= c.holdout for t in c.train)
    assert all(cut + window <= c.data_end for cut in c.all)
    # Too little history: no holdout, nothing to train on.
    assert churn_features.plan_cutoffs(dt.date(2024, 10, 1), dt.date(2024, 12, 31), 12).all == ()
    assert churn_features.plan_cutoffs(None, None, 12).all == ()


def test_top_decile_lift_counts_ties_in_proportion():
    y = np.array([1] * 10 + [0] * 90)
    perfect = np.arange(100, 0, -1, dtype=float)
    assert churn_model.top_decile_lift(y, perfect) == pytest.approx(10.0)
    # One score for everybody: the top decile is an average draw, lift 1, whatever the row order.
    assert churn_model.top_decile_lift(y, np.ones(100)) == pytest.approx(1.0)
    assert churn_model.top_decile_lift(y[::-1].copy(), np.ones(100)) == pytest.approx(1.0)


def test_not_enough_data_says_why():
    reason = churn_model.not_enough_data(np.array([1, 0, 1]), np.array([1, 0]))
    assert reason.startswith("not enough data to train a churn model")
    assert churn_model.not_enough_data(np.array([0, 1] * 200), np.array([0, 1] * 40)) is None


def test_the_feature_chain_is_the_projects_own_sql_down_to_staging():
    models, _ = load_project()
    chain = [m.name for m in churn_features.feature_chain(models)]
    assert chain[-1] == "ml_customer_features"
    assert {"int_customer_orders", "int_customer_rfm", "fct_customer_metrics"} <= set(chain)
    assert {m for m in chain if m.startswith("stg_")} <= set(churn_features.POINT_IN_TIME)


# --- on generated data, through Dagster -------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """3,000 generated customers: the daily graph, the weekly training, then churn_scores alone."""
    root = tmp_path_factory.mktemp("churn")
    generate(root / "data", CUSTOMERS, fmt="parquet")
    wh = make_warehouse(root, data_dir=root / "data")
    # Four training cutoffs keep the fit short; the default is twelve.
    assert wh.run().success
    first = wh.run("churn_training_job", run_config={"ops": {"churn_training_data": {"config": {"train_cutoffs": 4}}}})
    scored = wh.run(selection=[dg.AssetKey("churn_scores")])
    return wh, first, scored


def test_the_graph_trains_evaluates_and_then_scores(trained):
    wh, first, scored = trained
    assert first.success and scored.success
    materialized = {e.asset_key.to_user_string() for e in first.get_asset_materialization_events()}
    assert {"churn_training_data", "churn_model", "churn_model_evaluation"} <= materialized
    evaluation = next(
        e.materialization.metadata
        for e in first.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("churn_model_evaluation")
    )
    for name in ("roc_auc", "pr_auc", "brier", "top_decile_lift"):
        assert f"holdout_{name}" in evaluation and f"baseline_{name}" in evaluation
    assert evaluation["holdout_roc_auc"].value > evaluation["baseline_roc_auc"].value
    assert "data:image/png;base64," in evaluation["roc_and_lift: chart"].value
    assert "data:image/png;base64," in evaluation["calibration: chart"].value

    bundle = joblib.load(churn_model.latest_model_path(wh.settings.output_dir))
    assert bundle["code_version"] and bundle["holdout_cutoff"] == "2024-09-30"
    assert bundle["train_cutoffs"] and max(bundle["train_cutoffs"]) <= "2024-07-02"  # windows end by the holdout
    checks = {(c.asset_key.to_user_string(), c.check_name): c.passed for c in first.get_asset_check_evaluations()}
    assert checks[("churn_training_data", "no_label_for_incomplete_window")]
    assert checks[("churn_model_evaluation", "model_beats_rule")]

    assert wh.scalar("select count(*) from ml.churn_scores") == wh.scalar(
        "select count(*) from ml.ml_customer_features"
    )
    assert wh.scalar("select count(*) from ml.churn_scores where not (churn_probability between 0 and 1)") == 0
    assert wh.scalar("select count(distinct model_version) from ml.churn_scores") == 1
    assert wh.scalar("select any_value(model_version) from ml.churn_scores") == bundle["model_version"]
    assert [c.passed for c in scored.get_asset_check_evaluations()] == [True]


def test_training_is_deterministic(trained):
    wh, _, _ = trained
    with duckdb.connect(wh.settings.duckdb_path, read_only=True) as con:
        features = churn_features.training_features(con)
        X, y, _ = churn_model.split_arrays(con, features, "train")
    first, again = churn_model.fit(X[:5000], y[:5000]), churn_model.fit(X[:5000], y[:5000])
    assert np.array_equal(first.predict_proba(X), again.predict_proba(X))


def test_labels_only_for_complete_windows(trained):
    wh, _, _ = trained
    data_end = wh.scalar("select max(order_date) from staging.stg_orders")
    assert wh.scalar("select count(*) from ml.churn_training_data where churned is null") == 0
    assert wh.scalar("select max(label_window_end) from ml.churn_training_data") <= data_end
    # Only customers who existed at the cutoff.
    assert wh.scalar("select count(*) from ml.churn_training_data where account_age_days < 0") == 0


def test_orders_after_a_cutoff_change_none_of_its_features(trained, tmp_path):
    """Features at a cutoff are what was known then: rewriting and adding orders after it changes
    its labels, never its features."""
    wh, _, _ = trained
    copy = tmp_path / "copy.duckdb"
    shutil.copy(wh.settings.duckdb_path, copy)
    models, _ = load_project()
    key = "split, cutoff_date, customer_id"
    with duckdb.connect(str(copy)) as con:
        churn_features.build_training_data(con, models)
        before = con.execute(
            f"select * exclude (feature_generated_at) from {churn_features.TRAINING_TABLE} order by {key}"
        )
        before = before.fetchall()
        holdout = con.execute(f"select max(cutoff_date) from {churn_features.TRAINING_TABLE}").fetchone()[0]
        # After the holdout cutoff: every order completed and bigger, and a new order for everyone.
        con.execute(
            "update raw.raw_orders set status = 'completed', shipping_cost = 99 where order_date > ?", [holdout]
        )
        con.execute(
            "update raw.raw_order_items set quantity = quantity + 3 where order_id in "
            "(select order_id from raw.raw_orders where order_date > ?)",
            [holdout],
        )
        con.execute(
            """
            insert into raw.raw_orders by name
            select 900000000 + customer_id as order_id, customer_id, ?::date + 1 as order_date,
                   'completed' as status, 5.00 as shipping_cost, now()::timestamp as _loaded_at
            from raw.raw_customers where created_at <= ?
            """,
            [holdout, holdout],
        )
        con.execute(
            """
            insert into raw.raw_order_items by name
            select 900000000 + customer_id as order_item_id, 900000000 + customer_id as order_id,
                   (select min(product_id) from raw.raw_products) as product_id, 1 as quantity,
                   10.00 as unit_price, now()::timestamp as _loaded_at
            from raw.raw_customers where created_at <= ?
            """,
            [holdout],
        )
        churn_features.build_training_data(con, models)
        after = con.execute(
            f"select * exclude (feature_generated_at) from {churn_features.TRAINING_TABLE} order by {key}"
        )
        after = after.fetchall()
        columns = [
            d[0]
            for d in con.execute(
                f"select * exclude (feature_generated_at) from {churn_features.TRAINING_TABLE}"
            ).description
        ]
    assert len(before) == len(after) > 0
    label = columns.index("churned")
    features = [i for i, c in enumerate(columns) if c != "churned"]
    assert [_rounded(row, features) for row in before] == [_rounded(row, features) for row in after]
    # The change was seen: every holdout customer now ordered in its window.
    assert any(b[label] != a[label] for b, a in zip(before, after, strict=True))


def _rounded(row: tuple, columns: list[int]) -> list:
    """Parallel stddev over doubles differs in the last bits from run to run (design notes)."""
    return [float(f"{row[i]:.9g}") if isinstance(row[i], float) else row[i] for i in columns]


# --- the bundled 5-customer data --------------------------------------------------------------


def test_bundled_data_skips_training_and_the_rest_of_the_graph_runs(built, tmp_path):
    wh, result = built
    assert result.success  # the daily graph: no training, and no scores without a model
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"ml_customer_features", "winback_targets"} <= materialized
    assert not materialized & CHURN_ASSETS
    copy = make_warehouse(tmp_path)
    shutil.copy(wh.settings.duckdb_path, copy.settings.duckdb_path)
    training = copy.run("churn_training_job")
    assert training.success
    trained = {e.asset_key.to_user_string() for e in training.get_asset_materialization_events()}
    assert trained == {"churn_training_data"}
    with duckdb.connect(copy.settings.duckdb_path, read_only=True) as con:
        reason = churn_model.train(con, churn_features.training_features(con))
    assert isinstance(reason, str) and reason.startswith("not enough data to train a churn model")
    assert not churn_model.latest_model_path(copy.settings.output_dir).exists()


def test_the_code_version_comes_from_declared_inputs_not_from_the_source_file(monkeypatch):
    """Moving the module or editing a message retrains nothing; a declared input does."""
    before = churn_model.code_version()
    monkeypatch.setattr(Path, "read_bytes", lambda self: b"any source text")
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "any source text")
    assert churn_model.code_version() == before
    monkeypatch.setattr(churn_model, "MIN_TRAIN_ROWS", churn_model.MIN_TRAIN_ROWS + 1)
    assert churn_model.code_version() != before


def test_model_files_get_the_umasks_mode_like_every_other_output(tmp_path):
    # A deployment runs with umask 027 and a readers' group: a 0600 model file would shut the group out.
    old = os.umask(0o027)
    try:
        churn_model.write_atomically(tmp_path / "models" / "m.joblib", b"model")
    finally:
        os.umask(old)
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["m.joblib"]
    assert (tmp_path / "models" / "m.joblib").stat().st_mode & 0o777 == 0o640
