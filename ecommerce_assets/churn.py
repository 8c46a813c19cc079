"""A churn model trained and judged on a time split: point-in-time training data, training,
evaluation against the seed's rule, and daily scoring, as Dagster assets beside the warehouse.

The label: a customer who existed at a cutoff date churned when they placed no completed order in
the LABEL_DAYS days after it. The seed's `is_churn_risk` is not used as a target: it is a rule on
`recency_days`, itself a feature, so a model would only relearn the rule.

Features at a cutoff come from the project's own model SQL (every model `ml_customer_features`
depends on, from `load_project()`), run on staging rows filtered to what was known at the cutoff,
with the cutoff as the analysis date: the feature logic is never copied. The work runs in a
scratch in-memory database attached to the run's connection; only the final tables are written
to the warehouse, each in one `create or replace table ... as` statement.

The functions above the Dagster section take a DuckDB connection and import no Dagster, so tests
and the benchmark call them directly.
"""

import datetime as dt
import hashlib
import io
import json
import math
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np

from ecommerce_assets.models import Model, retarget
from ecommerce_assets.resources import DuckDBWarehouse

LABEL_DAYS = 90
FEATURE_MODEL = "ml_customer_features"
TRAINING_TABLE = "ml.churn_training_data"
EVALUATION_TABLE = "ml.churn_model_evaluation"
SCORES_TABLE = "ml.churn_scores"
SCRATCH = "churn_pit"  # the attached in-memory database the point-in-time chain runs in

# Columns of ml_customer_features that are not features: keys, timestamps, and the seed's rule
# (is_churn_risk), which is the baseline the model is judged against, not an input.
NOT_FEATURES = frozenset({"customer_id", "is_churn_risk", "country", "analysis_date", "feature_generated_at"})
# The seed's churn_risk as a score for the baseline: higher means more likely to churn.
RULE_SCORE = "case churn_risk when 'High' then 3 when 'Medium' then 2 when 'Low' then 1 else 0 end"

# How each staging relation looks at a cutoff: orders placed by then (with their current status:
# the data keeps no status history), their lines, customers signed up by then. A new staging
# dependency of the feature chain must be added here, or building the training data fails.
POINT_IN_TIME = {
    "stg_orders": "select * from {scratch}.sample_orders where order_date <= {cutoff}",
    "stg_order_items": "select i.* from {scratch}.sample_items as i semi join {scratch}.stg_orders as o using (order_id)",
    "stg_customers": "select * from {scratch}.sample_customers where customer_created_at <= {cutoff}",
    "stg_products": "select * from staging.stg_products",
}

# Below these, a fit or an AUC means nothing: the training asset skips instead.
MIN_TRAIN_ROWS = 200
MIN_CLASS_ROWS = 20


@dataclass(frozen=True)
class TrainingOptions:
    """How much history the training data covers and how much of it is sampled."""

    # Monthly cutoffs before the holdout cutoff used for training (the most recent ones).
    train_cutoffs: int = 12
    # Customers per cutoff at most: a deterministic hash sample of customers (the same ones at every
    # cutoff) keeps 1M customers within the time budget; features are per customer, so sampling
    # changes no sampled customer's features.
    max_customers: int = 25_000
    seed: int = 0


@dataclass(frozen=True)
class Cutoffs:
    data_end: dt.date | None
    train: tuple[dt.date, ...] = ()
    holdout: dt.date | None = None

    @property
    def all(self) -> tuple[dt.date, ...]:
        return (*self.train, *((self.holdout,) if self.holdout else ()))


def month_ends(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every last day of a month in [first, last]."""
    ends = []
    year, month = first.year, first.month
    while True:
        nxt = dt.date(year + month // 12, month % 12 + 1, 1)
        end = nxt - dt.timedelta(days=1)
        if end > last:
            return ends
        if end >= first:
            ends.append(end)
        year, month = nxt.year, nxt.month


def plan_cutoffs(first_signup: dt.date | None, data_end: dt.date | None, train_cutoffs: int) -> Cutoffs:
    """The holdout is the latest month end whose label window is complete; training cutoffs are the
    month ends whose label windows end by the holdout cutoff, so no training label looks into the
    period the holdout's labels come from."""
    if first_signup is None or data_end is None:
        return Cutoffs(data_end)
    window = dt.timedelta(days=LABEL_DAYS)
    labelled = month_ends(first_signup, data_end - window)
    if not labelled:
        return Cutoffs(data_end)
    holdout = labelled[-1]
    train = [c for c in labelled if c + window <= holdout][-train_cutoffs:] if train_cutoffs > 0 else []
    return Cutoffs(data_end, tuple(train), holdout)


def feature_chain(models: Sequence[Model], target: str = FEATURE_MODEL) -> list[Model]:
    """`target` and every model it reads down to the staging layer, in dependency order. Staging
    relations are where the cutoff filters apply (POINT_IN_TIME), so what they read is not needed."""
    by_name = {m.name: m for m in models}
    needed, todo = set(), [target]
    while todo:
        name = todo.pop()
        if name in needed or name not in by_name:
            continue
        needed.add(name)
        if by_name[name].layer != "staging":
            todo.extend(by_name[name].deps)
    return [m for m in models if m.name in needed]


def _q(value: dt.date) -> str:
    return f"DATE '{value.isoformat()}'"


def _scratch(con: duckdb.DuckDBPyConnection) -> None:
    names = {r[0] for r in con.execute("select database_name from duckdb_databases()").fetchall()}
    if SCRATCH not in names:
        con.execute(f"attach ':memory:' as {SCRATCH}")


def _drop_scratch(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"detach database if exists {SCRATCH}")


def sample_fraction(customers: int, max_customers: int) -> float:
    return 1.0 if customers <= max_customers else max_customers / customers


def _sampled(column: str, fraction: float, seed: int) -> str:
    if fraction >= 1.0:
        return "true"
    return f"hash({column}, {int(seed)}) % 1000000 < {int(fraction * 1_000_000)}"


def point_in_time_features(
    con: duckdb.DuckDBPyConnection, chain: Sequence[Model], cutoff: dt.date, run_started_at: dt.datetime
) -> None:
    """Builds `<scratch>.<model>` for every model of `chain` as known at `cutoff` (the sample tables
    must exist: see build_training_data)."""
    scratch_of = {m.table: f"{SCRATCH}.{m.name}" for m in chain}
    con.execute("set variable analysis_date = ?::date", [cutoff])
    con.execute("set variable run_started_at = ?::timestamp", [run_started_at])
    for model in chain:
        if model.layer == "staging":
            if model.name not in POINT_IN_TIME:
                raise ValueError(
                    f"{model.name} feeds {FEATURE_MODEL} but churn.POINT_IN_TIME does not say how it "
                    "looked at a cutoff; add it there"
                )
            sql = POINT_IN_TIME[model.name].format(scratch=SCRATCH, cutoff=_q(cutoff))
        else:
            unfiltered = [d for d in model.deps if d not in {m.name for m in chain}]
            if unfiltered:
                raise ValueError(f"{model.name} reads {unfiltered}, which the point-in-time chain does not filter")
            sql = retarget(model.sql, scratch_of)
        con.execute(f"create or replace table {SCRATCH}.{model.name} as {sql}")


@dataclass
class TrainingData:
    cutoffs: Cutoffs
    rows: int = 0
    customers: int = 0
    sample_fraction: float = 1.0
    features: list[str] = field(default_factory=list)
    seconds_per_cutoff: list[float] = field(default_factory=list)


def build_training_data(
    con: duckdb.DuckDBPyConnection,
    models: Sequence[Model],
    options: TrainingOptions = TrainingOptions(),
    run_started_at: dt.datetime | None = None,
) -> TrainingData:
    """Writes TRAINING_TABLE: per cutoff, every (sampled) customer who existed then, their features
    as of the cutoff, the seed's churn_risk then, and the label (NULL while its window is open)."""
    import time

    run_started_at = run_started_at or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    first_signup, data_end, customers = con.execute(
        "select (select min(customer_created_at) from staging.stg_customers),"
        " (select max(order_date) from staging.stg_orders),"
        " (select count(*) from staging.stg_customers)"
    ).fetchone()
    cutoffs = plan_cutoffs(first_signup, data_end, options.train_cutoffs)
    fraction = sample_fraction(customers, options.max_customers)
    result = TrainingData(cutoffs, customers=customers, sample_fraction=fraction)
    chain = feature_chain(models)
    _scratch(con)
    try:
        con.execute(f"""
            create or replace table {SCRATCH}.sample_customers as
                select * from staging.stg_customers where {_sampled("customer_id", fraction, options.seed)};
            create or replace table {SCRATCH}.sample_orders as
                select * from staging.stg_orders where {_sampled("customer_id", fraction, options.seed)};
            create or replace table {SCRATCH}.sample_items as
                select i.* from staging.stg_order_items as i
                semi join {SCRATCH}.sample_orders as o using (order_id);
            create or replace table {SCRATCH}.completed as
                select customer_id, order_date from {SCRATCH}.sample_orders where is_completed;
        """)
        for cutoff in cutoffs.all:
            start = time.perf_counter()
            point_in_time_features(con, chain, cutoff, run_started_at)
            if not result.features:
                result.features = _feature_columns(con)
                con.execute(f"""
                    create or replace table {SCRATCH}.training as
                    select ''::varchar as split, null::date as cutoff_date, f.*,
                           null::varchar as churn_risk, null::date as label_window_end,
                           null::integer as churned
                    from {SCRATCH}.{FEATURE_MODEL} as f limit 0
                """)
            split = "holdout" if cutoff == cutoffs.holdout else "train"
            window_end = cutoff + dt.timedelta(days=LABEL_DAYS)
            # The label is NULL unless the whole window lies within the data.
            con.execute(
                f"""
                insert into {SCRATCH}.training by name
                select ? as split, ?::date as cutoff_date, f.*, m.churn_risk, ?::date as label_window_end,
                       case when ?::date <= ?::date then
                           case when exists (
                               select 1 from {SCRATCH}.completed as o
                               where o.customer_id = f.customer_id
                                 and o.order_date > ?::date and o.order_date <= ?::date
                           ) then 0 else 1 end
                       end as churned
                from {SCRATCH}.{FEATURE_MODEL} as f
                join {SCRATCH}.fct_customer_metrics as m using (customer_id)
                """,
                [split, cutoff, window_end, window_end, data_end, cutoff, window_end],
            )
            result.seconds_per_cutoff.append(round(time.perf_counter() - start, 3))
        if result.features:
            con.execute(
                f"create or replace table {TRAINING_TABLE} as"
                f" select * from {SCRATCH}.training order by cutoff_date, customer_id"
            )
        else:  # no cutoff: an empty table with the columns a consumer expects
            con.execute(
                f"create or replace table {TRAINING_TABLE} as select ''::varchar as split, null::date as cutoff_date,"
                " null::bigint as customer_id, null::varchar as churn_risk, null::date as label_window_end,"
                " null::integer as churned limit 0"
            )
        result.rows = con.execute(f"select count(*) from {TRAINING_TABLE}").fetchone()[0]
    finally:
        _drop_scratch(con)
    return result


_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "U")


def _feature_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The numeric columns of the point-in-time ml_customer_features that are features."""
    described = con.execute(f"describe {SCRATCH}.{FEATURE_MODEL}").fetchall()
    return [name for name, kind, *_ in described if name not in NOT_FEATURES and kind.upper().startswith(_NUMERIC)]


def feature_matrix(con: duckdb.DuckDBPyConnection, relation: str, features: Sequence[str], where: str = "true"):
    """(X as float64 with NaN for NULL, customer_id, the rest of the row as a dict of arrays)."""
    columns = ", ".join(f'cast("{f}" as double) as "{f}"' for f in features)
    data = con.execute(f"select customer_id, {columns} from {relation} where {where} order by customer_id").fetchnumpy()
    X = np.column_stack([np.ma.filled(np.ma.asarray(data[f], dtype=float), np.nan) for f in features])
    return X, np.asarray(data["customer_id"])


def split_arrays(con: duckdb.DuckDBPyConnection, features: Sequence[str], split: str):
    """X, y and the rule's score of one split of the training data, rows in a fixed order."""
    columns = ", ".join(f'cast("{f}" as double) as "{f}"' for f in features)
    data = con.execute(
        f"select churned, {RULE_SCORE} as rule_score, {columns} from {TRAINING_TABLE}"
        f" where split = ? and churned is not null order by cutoff_date, customer_id",
        [split],
    ).fetchnumpy()
    X = np.column_stack([np.ma.filled(np.ma.asarray(data[f], dtype=float), np.nan) for f in features])
    return X, np.asarray(data["churned"], dtype=np.int8), np.asarray(data["rule_score"], dtype=float)


def not_enough_data(y_train: np.ndarray, y_holdout: np.ndarray) -> str | None:
    """Why no honest model can be fit and judged on this data, or None."""
    for name, y, minimum in (("training", y_train, MIN_TRAIN_ROWS), ("holdout", y_holdout, MIN_CLASS_ROWS * 2)):
        positives = int(y.sum()) if len(y) else 0
        if len(y) < minimum or min(positives, len(y) - positives) < MIN_CLASS_ROWS:
            return (
                f"not enough data to train a churn model: the {name} cutoffs hold {len(y)} labelled customers "
                f"({positives} churned); at least {minimum} with {MIN_CLASS_ROWS} of each class are needed"
            )
    return None


def fit(X: np.ndarray, y: np.ndarray, seed: int = 0):
    """Gradient-boosted trees: NULL features (no second order, no trend) stay missing, not imputed."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    # No early stopping: its validation split would be random, not a time split. 100 trees of 15
    # leaves score as well on the holdout as 150 of 31 (measured at 20,000 customers) in a fifth of the time.
    model = HistGradientBoostingClassifier(
        max_iter=100, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=50, early_stopping=False, random_state=seed
    )
    with one_openmp_thread():
        return model.fit(X, y)


def one_openmp_thread():
    """scikit-learn's trees run on OpenMP, whose threads spin at every barrier. With DuckDB's threads
    or another process on the two cores, two OpenMP threads made a fit ~10x slower than one
    (measured: 5,000 rows, 6.2 s against 0.7 s); alone on the machine one thread costs at most 2x."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="openmp")


def predict(model, X: np.ndarray) -> np.ndarray:
    if len(X) == 0:
        return np.zeros(0)
    with one_openmp_thread():
        return model.predict_proba(X)[:, 1]


def top_decile_lift(y: np.ndarray, score: np.ndarray, share: float = 0.1) -> float:
    """Churn rate among the top `share` by score over the overall rate. Ties at the boundary count
    in proportion (the expected value of breaking them at random), so a coarse rule is not favoured
    or penalised by the order its tied rows happen to be in."""
    n = len(y)
    if n == 0 or y.sum() == 0:
        return float("nan")
    k = max(1, math.ceil(n * share))
    order = np.argsort(-score, kind="stable")
    threshold = score[order[k - 1]]
    above = score > threshold
    tied = score == threshold
    expected = y[above].sum() + y[tied].sum() * (k - above.sum()) / tied.sum()
    return float((expected / k) / y.mean())


def metrics(y: np.ndarray, score: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    return {
        "roc_auc": float(roc_auc_score(y, score)),
        "pr_auc": float(average_precision_score(y, score)),
        "brier": float(brier_score_loss(y, probability)),
        "top_decile_lift": top_decile_lift(y, score),
    }


def rule_probability(train_score: np.ndarray, train_y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The rule's risk levels as probabilities: each level's churn rate on the training cutoffs
    (the overall rate for a level never seen), so its Brier score is the rule's at its best."""
    overall = float(train_y.mean())
    rates = {level: float(train_y[train_score == level].mean()) for level in np.unique(train_score)}
    return np.array([rates.get(s, overall) for s in score])


def code_version(models: Sequence[Model] = ()) -> str:
    """This module and the SQL of the feature chain: either changing means a different model."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for model in models:
        digest.update(model.code_version.encode())
    return digest.hexdigest()[:16]


def model_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "models"


def latest_model_path(output_dir: str | Path) -> Path:
    return model_dir(output_dir) / "churn_model.joblib"


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 would survive the rename; 0666 gives what the umask allows, as for
    # every other output (a deployment's readers' group reads them).
    staged = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    handle = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise


def save_model(output_dir: str | Path, bundle: dict) -> tuple[Path, str]:
    """Writes the bundle under a versioned name and as the latest model; returns (path, version)."""
    import joblib

    buffer = io.BytesIO()
    joblib.dump(bundle, buffer)
    data = buffer.getvalue()
    version = f"{bundle['holdout_cutoff']}-{hashlib.sha256(data).hexdigest()[:12]}"
    bundle = {**bundle, "model_version": version}
    buffer = io.BytesIO()
    joblib.dump(bundle, buffer)
    path = model_dir(output_dir) / f"churn_model-{version}.joblib"
    write_atomically(path, buffer.getvalue())
    write_atomically(latest_model_path(output_dir), buffer.getvalue())
    return path, version


def load_model(output_dir: str | Path) -> dict | None:
    import joblib

    path = latest_model_path(output_dir)
    return joblib.load(path) if path.exists() else None


def train(con: duckdb.DuckDBPyConnection, features: Sequence[str], seed: int = 0) -> dict | str:
    """Fits on the training cutoffs of TRAINING_TABLE; the bundle to save, or why not."""
    X, y, _ = split_arrays(con, features, "train")
    y_holdout = np.array(
        [
            r[0]
            for r in con.execute(
                f"select churned from {TRAINING_TABLE} where split = 'holdout' and churned is not null"
            ).fetchall()
        ],
        dtype=np.int8,
    )
    reason = not_enough_data(y, y_holdout)
    if reason:
        return reason
    model = fit(X, y, seed)
    cutoffs = [r[0] for r in con.execute(f"select distinct cutoff_date from {TRAINING_TABLE} order by 1").fetchall()]
    holdout = con.execute(f"select max(cutoff_date) from {TRAINING_TABLE} where split = 'holdout'").fetchone()[0]
    import sklearn

    return {
        "model": model,
        "features": list(features),
        "train_cutoffs": [c.isoformat() for c in cutoffs if c != holdout],
        "holdout_cutoff": holdout.isoformat(),
        "label_days": LABEL_DAYS,
        "train_rows": int(len(y)),
        "train_churn_rate": float(y.mean()),
        "seed": seed,
        "sklearn_version": sklearn.__version__,
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def evaluate(con: duckdb.DuckDBPyConnection, bundle: dict) -> dict:
    """Model and rule on the holdout cutoff; writes EVALUATION_TABLE and returns the figures and curves."""
    features = bundle["features"]
    X_train, y_train, rule_train = split_arrays(con, features, "train")
    X, y, rule = split_arrays(con, features, "holdout")
    p = predict(bundle["model"], X)
    model_figures = metrics(y, p, p)
    rule_figures = metrics(y, rule, rule_probability(rule_train, y_train, rule))
    rows = [(name, model_figures[name], rule_figures[name]) for name in model_figures]
    con.execute(
        f"create or replace table {EVALUATION_TABLE} as"
        " select * from (values " + ", ".join("(?, ?::double, ?::double)" for _ in rows) + ")"
        " as t(metric, model, rule)",
        [v for row in rows for v in row],
    )
    return {
        "model": model_figures,
        "rule": rule_figures,
        "holdout_rows": int(len(y)),
        "holdout_churn_rate": float(y.mean()),
        "y": y,
        "p": p,
        "rule_score": rule,
        "rule_probability": rule_probability(rule_train, y_train, rule),
    }


def score(con: duckdb.DuckDBPyConnection, bundle: dict, run_started_at: dt.datetime | None = None) -> int:
    """Writes SCORES_TABLE: every customer of ml.ml_customer_features with its churn probability."""
    X, ids = feature_matrix(con, "ml.ml_customer_features", bundle["features"])
    p = predict(bundle["model"], X)
    scored_at = run_started_at or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    con.register("churn_scored", {"customer_id": ids.astype(np.int64), "churn_probability": p.astype(float)})
    try:
        con.execute(
            f"""
            create or replace table {SCORES_TABLE} as
            select f.customer_id, s.churn_probability, ?::varchar as model_version,
                   f.analysis_date, ?::timestamp as scored_at
            from ml.ml_customer_features as f
            left join churn_scored as s using (customer_id)
            order by f.customer_id
            """,
            [bundle["model_version"], scored_at],
        )
    finally:
        con.unregister("churn_scored")
    return len(ids)


# --- charts -----------------------------------------------------------------------------------


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def charts(evaluation: dict) -> dict[str, bytes]:
    """ROC and lift curves, and calibration, of model and rule on the holdout, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import roc_curve

    y = evaluation["y"]
    fig = Figure(figsize=(10, 4.5))
    FigureCanvasAgg(fig)
    roc, lift = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for label, s in (("model", evaluation["p"]), ("seed's rule", evaluation["rule_score"])):
        fpr, tpr, _ = roc_curve(y, s)
        roc.plot(fpr, tpr, label=f"{label} (AUC {evaluation['model' if label == 'model' else 'rule']['roc_auc']:.3f})")
        shares = np.linspace(0.05, 1, 20)
        lift.plot(shares, [top_decile_lift(y, s, share) for share in shares], marker="o", markersize=3, label=label)
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":")
    roc.set_xlabel("False positive rate")
    roc.set_ylabel("True positive rate")
    roc.set_title("ROC on the holdout cutoff")
    roc.legend(loc="lower right")
    lift.axhline(1, color="grey", linestyle=":")
    lift.set_xlabel("Share of customers, highest score first")
    lift.set_ylabel("Lift (churn rate / overall)")
    lift.set_title("Cumulative lift")
    lift.legend()
    roc_png = _png(fig)

    fig = Figure(figsize=(5.5, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, prob in (("model", evaluation["p"]), ("seed's rule (level rates)", evaluation["rule_probability"])):
        true, predicted = calibration_curve(y, prob, n_bins=10, strategy="quantile")
        ax.plot(predicted, true, marker="o", label=label)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("Predicted churn probability")
    ax.set_ylabel("Observed churn rate")
    ax.set_title("Calibration on the holdout cutoff")
    ax.legend()
    return {"roc_and_lift": roc_png, "calibration": _png(fig)}


# --- Dagster ----------------------------------------------------------------------------------

GROUP = "churn"
OWNER = "team:analytics"
TRAINING_ASSETS = ("churn_training_data", "churn_model", "churn_model_evaluation")
FEATURE_DEPS = [dg.AssetKey(n) for n in ("stg_customers", "stg_orders", "stg_order_items", FEATURE_MODEL)]


class ChurnTrainingConfig(dg.Config):
    """Run config of churn_training_data (Launchpad: ops -> churn_training_data -> config)."""

    train_cutoffs: int = TrainingOptions.train_cutoffs
    max_customers: int = TrainingOptions.max_customers
    seed: int = TrainingOptions.seed


def _table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".")
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, name]
        ).fetchone()[0]
    )


def _md_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows[1:]])


def build_churn(output_dir: str, models: Sequence[Model], freshness_hours: int) -> dict:
    """The churn assets and their checks (the training job and its schedule are in schedules.py).
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
                    _md_table(
                        [["split", "rows", "labelled", "churn rate"]]
                        + [[s, f"{n:,}", f"{n_l:,}", f"{rate:.3f}"] for s, n, n_l, rate in counts]
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
        description="The churn model (gradient-boosted trees, scikit-learn) fit on the training cutoffs, saved "
        "with its code version and cutoff dates under <output_dir>/models/. Skips when the data is too small.",
    )
    def churn_model(context: dg.AssetExecutionContext, duckdb: DuckDBWarehouse):
        with duckdb.get_connection() as con:
            features = training_features(con)
            bundle = train(con, features) if features else "not enough data to train a churn model: no cutoff"
        if isinstance(bundle, str):
            context.log.warning(f"{bundle}; skipping churn_model (the rest of the graph is unaffected)")
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
        description="The model against the seed's rule (churn_risk as a score) on the holdout cutoff, the latest "
        "cutoff with a complete label window: ROC AUC, PR AUC, Brier, top-decile lift, ROC/lift and calibration charts.",
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
            _md_table(
                [["metric", "model", "seed's rule"]]
                + [[n, f"{result['model'][n]:.3f}", f"{result['rule'][n]:.3f}"] for n in result["model"]]
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
        description="Each customer's churn probability at the run's analysis date from the latest churn model "
        "(<output_dir>/models/churn_model.joblib), with its model version. Runs with the daily graph; "
        "skips until a model has been trained.",
    )
    def churn_scores(context: dg.AssetExecutionContext, duckdb: DuckDBWarehouse):
        bundle = load_model(output_dir)
        if bundle is None:
            context.log.warning("no churn model yet (run churn_training_job); skipping churn_scores")
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
        description="The model beats the seed's rule on the holdout (ROC AUC); WARN when it does not.",
    )
    def model_beats_rule(duckdb: DuckDBWarehouse) -> dg.AssetCheckResult:
        with duckdb.get_connection() as con:
            if not _table_exists(con, EVALUATION_TABLE):
                return dg.AssetCheckResult(passed=True, metadata={"note": "no evaluation yet"})
            model, rule = con.execute(f"select model, rule from {EVALUATION_TABLE} where metric = 'roc_auc'").fetchone()
        return dg.AssetCheckResult(
            passed=bool(model > rule),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"holdout_roc_auc": model, "baseline_roc_auc": rule, "margin": model - rule},
        )

    @dg.asset_check(
        asset=churn_scores,
        description="Every customer with features has a churn probability between 0 and 1.",
    )
    def scores_are_probabilities(duckdb: DuckDBWarehouse) -> dg.AssetCheckResult:
        with duckdb.get_connection() as con:
            if not _table_exists(con, SCORES_TABLE):
                return dg.AssetCheckResult(passed=True, metadata={"note": "no scores yet"})
            failing = con.execute(f"""
                select count(*) from ml.ml_customer_features as f
                left join {SCORES_TABLE} as s using (customer_id)
                where s.churn_probability is null or not (s.churn_probability between 0 and 1)
            """).fetchone()[0]
        return dg.AssetCheckResult(passed=failing == 0, metadata={"failing_rows": failing})

    @dg.asset_check(
        asset=churn_training_data,
        description="No row has a label whose window is not complete within the data.",
    )
    def no_label_for_incomplete_window(duckdb: DuckDBWarehouse) -> dg.AssetCheckResult:
        with duckdb.get_connection() as con:
            if not _table_exists(con, TRAINING_TABLE):  # the weekly training has not run yet
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


def training_features(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The feature columns of TRAINING_TABLE, in table order."""
    described = con.execute(f"describe {TRAINING_TABLE}").fetchall()
    skip = NOT_FEATURES | {"split", "cutoff_date", "churn_risk", "label_window_end", "churned"}
    return [name for name, kind, *_ in described if name not in skip and kind.upper().startswith(_NUMERIC)]
