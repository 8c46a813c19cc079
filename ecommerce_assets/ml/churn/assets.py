"""The churn model as Dagster assets beside the warehouse: the point-in-time training data, the
model, its evaluation and the daily scores, with their checks (the work: features.py, model.py).
"""

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from ecommerce_assets.defs.resources import DuckDBWarehouse
from ecommerce_assets.markdown import escape_markdown, markdown_table
from ecommerce_assets.ml.churn.features import (
    FEATURE_MODEL,
    LABEL_DAYS,
    TRAINING_TABLE,
    TrainingOptions,
    build_training_data,
    feature_chain,
    training_features,
)
from ecommerce_assets.ml.churn.model import (
    EVALUATION_TABLE,
    SCORES_TABLE,
    charts,
    code_version,
    evaluate,
    load_model,
    save_model,
    score,
    train,
    write_atomically,
)
from ecommerce_assets.project.models import Model
from ecommerce_assets.run.duckdb.database import table_exists

# --- Dagster ----------------------------------------------------------------------------------

GROUP = "churn"
OWNER = "team:analytics"
TRAINING_ASSETS = ("churn_training_data", "churn_model", "churn_model_evaluation")
FEATURE_DEPS = [dg.AssetKey(n) for n in ("stg_customers", "stg_orders", "stg_order_items", FEATURE_MODEL)]


# What would change a "not built": said on the asset's page, not only in the run's log.
MORE_HISTORY = (
    f"data with more customers and history: the training cutoffs need enough customers whose {LABEL_DAYS}-day "
    "label window is complete, e.g. the churn demo of docs/ui.md (generated customers, then a build)"
)
TRAIN_FIRST = "a churn model: churn_training_job trains one when the data allows it (see churn_model's page)"
# A run tag, so the run list and the run's page say that a green run left assets unbuilt.
NOT_BUILT_TAG = "ecommerce/not_built"


def not_built(context: dg.AssetExecutionContext, assets: Sequence[str], reason: str, remedy: str):
    """An asset the run could not build, where the UI shows it: an observation on each asset's page
    (Dagster's open-source storage keeps no asset failure events) and a run tag; and the log line.
    The step still succeeds: the rest of the graph is unaffected."""
    context.log.warning(f"{reason}; not built: {', '.join(assets)} (the rest of the graph is unaffected)")
    for name in assets:
        yield dg.AssetObservation(
            asset_key=name,
            description=f"Not built by this run: {reason}.",
            metadata={"state": "not built", "reason": reason, "what would change it": remedy},
        )
    tags = context.instance.get_run_by_id(context.run.run_id).tags
    unbuilt = sorted({*filter(None, tags.get(NOT_BUILT_TAG, "").split(", ")), *assets})
    context.instance.add_run_tags(context.run.run_id, {NOT_BUILT_TAG: ", ".join(unbuilt)})


class ChurnTrainingConfig(dg.Config):
    """Run config of churn_training_data (Launchpad: ops -> churn_training_data -> config)."""

    train_cutoffs: int = TrainingOptions.train_cutoffs
    max_customers: int = TrainingOptions.max_customers
    seed: int = TrainingOptions.seed


def build_churn(output_dir: str, models: Sequence[Model], freshness_hours: int) -> dict:
    """The churn assets and their checks (the training job and its schedule are in defs/schedules.py).
    Scoring is as fresh as the daily tables; training is weekly, so a week later."""
    import base64

    daily = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=freshness_hours))
    weekly = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(days=7, hours=freshness_hours))

    chain = feature_chain(models)
    version = code_version(chain)

    @dg.asset(
        group_name=GROUP,
        owners=[OWNER],
        freshness_policy=weekly,
        deps=FEATURE_DEPS,
        kinds={"duckdb", "python"},
        code_version=version,
        metadata={"dagster/table_name": TRAINING_TABLE},
        description=(
            "Point-in-time training data: per monthly cutoff, every customer who existed then, the "
            f"features of {FEATURE_MODEL} as known at the cutoff and the label churned = no completed "
            f"order in the {LABEL_DAYS} days after it (NULL while that window is open)."
        ),
    )
    def churn_training_data(context: dg.AssetExecutionContext, config: ChurnTrainingConfig, duckdb: DuckDBWarehouse):
        options = TrainingOptions(config.train_cutoffs, config.max_customers, config.seed)
        with duckdb.get_connection() as con:
            data = build_training_data(con, models, options)
            counts = con.execute(
                f"select split, count(*), count(churned), coalesce(avg(churned), 0) from {TRAINING_TABLE}"
                " group by split order by split"
            ).fetchall()
        c = data.cutoffs
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": data.rows,
                "data_end": str(c.data_end),
                "holdout_cutoff": str(c.holdout),
                "train_cutoffs": ", ".join(map(str, c.train)) or "(none)",
                "customers": data.customers,
                "sample_fraction": data.sample_fraction,
                "features": ", ".join(data.features),
                "seconds_per_cutoff": json.dumps(data.seconds_per_cutoff),
                "rows by split": dg.MetadataValue.md(
                    markdown_table(
                        ["split", "rows", "labelled", "churn rate"],
                        [[s, f"{n:,}", f"{n_l:,}", f"{rate:.3f}"] for s, n, n_l, rate in counts],
                    )
                ),
            }
        )

    @dg.asset(
        group_name=GROUP,
        owners=[OWNER],
        freshness_policy=weekly,
        deps=[churn_training_data],
        kinds={"python", "scikitlearn"},
        code_version=version,
        output_required=False,
        description=escape_markdown(
            # The catalog shows a description's first words: the condition comes first.
            "Not built while the data is too small to train on (its page's Metadata says why). The churn model "
            "(gradient-boosted trees, scikit-learn) fit on the training cutoffs, saved with its code version and "
            "cutoff dates under <output_dir>/models/."
        ),
    )
    def churn_model(context: dg.AssetExecutionContext, duckdb: DuckDBWarehouse):
        with duckdb.get_connection() as con:
            features = training_features(con)
            bundle = train(con, features) if features else "not enough data to train a churn model: no cutoff"
        if isinstance(bundle, str):
            yield from not_built(context, ["churn_model", "churn_model_evaluation"], bundle, MORE_HISTORY)
            return
        bundle["code_version"] = version
        path, model_version = save_model(output_dir, bundle)
        yield dg.Output(
            None,
            metadata={
                "path": dg.MetadataValue.path(str(path)),
                "model_version": model_version,
                "code_version": version,
                "train_cutoffs": ", ".join(bundle["train_cutoffs"]),
                "holdout_cutoff": bundle["holdout_cutoff"],
                "train_rows": bundle["train_rows"],
                "train_churn_rate": bundle["train_churn_rate"],
                "features": ", ".join(bundle["features"]),
            },
        )

    @dg.asset(
        group_name=GROUP,
        owners=[OWNER],
        freshness_policy=weekly,
        deps=[churn_model, churn_training_data],
        kinds={"duckdb", "python"},
        code_version=version,
        metadata={"dagster/table_name": EVALUATION_TABLE},
        description="Not built while churn_model is not (its page's Metadata says why). The model against the "
        "seed's rule (churn_risk as a score) on the holdout cutoff, the latest cutoff with a complete label window: "
        "ROC AUC, PR AUC, Brier, top-decile lift, ROC/lift and calibration charts.",
    )
    def churn_model_evaluation(context: dg.AssetExecutionContext, duckdb: DuckDBWarehouse):
        bundle = load_model(output_dir)
        with duckdb.get_connection() as con:
            result = evaluate(con, bundle)
        images = charts(result)
        chart_dir = Path(output_dir) / "charts"
        meta: dict = {
            "model_version": bundle["model_version"],
            "holdout_cutoff": bundle["holdout_cutoff"],
            "holdout_rows": result["holdout_rows"],
            "holdout_churn_rate": result["holdout_churn_rate"],
        }
        for name in ("roc_auc", "pr_auc", "brier", "top_decile_lift"):
            meta[f"holdout_{name}"] = result["model"][name]
            meta[f"baseline_{name}"] = result["rule"][name]
        meta["holdout table"] = dg.MetadataValue.md(
            markdown_table(
                ["metric", "model", "seed's rule"],
                [[n, f"{result['model'][n]:.3f}", f"{result['rule'][n]:.3f}"] for n in result["model"]],
            )
        )
        for name, png in images.items():
            path = chart_dir / f"churn_{name}.png"
            write_atomically(path, png)
            encoded = base64.b64encode(png).decode("ascii")
            meta[f"{name}: chart"] = dg.MetadataValue.md(f"![{name}](data:image/png;base64,{encoded})")
            meta[f"{name}: PNG file"] = dg.MetadataValue.path(str(path))
        return dg.MaterializeResult(metadata=meta)

    @dg.asset(
        group_name=GROUP,
        owners=[OWNER],
        freshness_policy=daily,
        deps=[dg.AssetKey(FEATURE_MODEL)],
        kinds={"duckdb", "python"},
        code_version=version,
        output_required=False,
        metadata={"dagster/table_name": SCORES_TABLE},
        description=escape_markdown(
            "Not built until a churn model has been trained (its page's Metadata says so). Each customer's churn "
            "probability at the run's analysis date from the latest churn model "
            "(<output_dir>/models/churn_model.joblib), with its model version. Runs with the daily graph."
        ),
    )
    def churn_scores(context: dg.AssetExecutionContext, duckdb: DuckDBWarehouse):
        bundle = load_model(output_dir)
        if bundle is None:
            yield from not_built(context, ["churn_scores"], "no churn model yet", TRAIN_FIRST)
            return
        with duckdb.get_connection() as con:
            rows = score(con, bundle)
            mean, analysis_date = con.execute(
                f"select avg(churn_probability), max(analysis_date)::varchar from {SCORES_TABLE}"
            ).fetchone()
        yield dg.Output(
            None,
            metadata={
                "dagster/row_count": rows,
                "model_version": bundle["model_version"],
                "analysis_date": analysis_date,
                "mean_churn_probability": float(mean) if mean is not None else float("nan"),
            },
        )

    @dg.asset_check(
        asset=churn_model_evaluation,
        description="WARN: the model beats the seed's rule on the holdout (ROC AUC).",
    )
    def model_beats_rule(duckdb: DuckDBWarehouse) -> dg.AssetCheckResult:
        with duckdb.get_connection() as con:
            if not table_exists(con, EVALUATION_TABLE):
                return dg.AssetCheckResult(passed=True, metadata={"note": "no evaluation yet"})
            model, rule = con.execute(f"select model, rule from {EVALUATION_TABLE} where metric = 'roc_auc'").fetchone()
        return dg.AssetCheckResult(
            passed=bool(model > rule),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"holdout_roc_auc": model, "baseline_roc_auc": rule, "margin": model - rule},
        )

    @dg.asset_check(
        asset=churn_scores,
        description="ERROR: every customer with features has a churn probability between 0 and 1.",
    )
    def scores_are_probabilities(duckdb: DuckDBWarehouse) -> dg.AssetCheckResult:
        with duckdb.get_connection() as con:
            if not table_exists(con, SCORES_TABLE):
                return dg.AssetCheckResult(passed=True, metadata={"note": "no scores yet"})
            failing = con.execute(f"""
                select count(*) from ml.ml_customer_features as f
                left join {SCORES_TABLE} as s using (customer_id)
                where s.churn_probability is null or not (s.churn_probability between 0 and 1)
            """).fetchone()[0]
        return dg.AssetCheckResult(passed=failing == 0, metadata={"failing_rows": failing})

    @dg.asset_check(
        asset=churn_training_data,
        description="ERROR: no row has a label whose window is not complete within the data.",
    )
    def no_label_for_incomplete_window(duckdb: DuckDBWarehouse) -> dg.AssetCheckResult:
        with duckdb.get_connection() as con:
            if not table_exists(con, TRAINING_TABLE):  # the weekly training has not run yet
                return dg.AssetCheckResult(passed=True, metadata={"note": "no training data yet"})
            failing = con.execute(f"""
                select count(*) from {TRAINING_TABLE}
                where churned is not null
                  and label_window_end > (select max(order_date) from staging.stg_orders)
            """).fetchone()[0]
        return dg.AssetCheckResult(passed=failing == 0, metadata={"failing_rows": failing})

    return {
        "assets": [churn_training_data, churn_model, churn_model_evaluation, churn_scores],
        "asset_checks": [model_beats_rule, scores_are_probabilities, no_label_for_incomplete_window],
    }
