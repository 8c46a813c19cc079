"""The churn model trained and judged on a time split: fit, evaluation against the seed's rule,
scoring, the saved model file and its charts. Takes a DuckDB connection and imports no Dagster, so
tests and the benchmark call it directly (training data: features.py; the assets: assets.py).
"""

import datetime as dt
import hashlib
import io
import math
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np

from ecommerce_assets.ml.churn.features import LABEL_DAYS, NOT_FEATURES, POINT_IN_TIME, TRAINING_TABLE
from ecommerce_assets.project.models import Model

# Bump when a change to the training, evaluation or scoring code changes what they produce (the
# estimator or its settings, the split, the metrics): with the declared inputs below and the feature
# chain's SQL it makes the churn assets' code version (`code_version`), so a move, a rename or a new
# message retrains nothing.
MODEL_VERSION = "1"

EVALUATION_TABLE = "ml.churn_model_evaluation"
SCORES_TABLE = "ml.churn_scores"
# The seed's churn_risk as a score for the baseline: higher means more likely to churn.
RULE_SCORE = "case churn_risk when 'High' then 3 when 'Medium' then 2 when 'Low' then 1 else 0 end"

# Below these, a fit or an AUC means nothing: the training asset skips instead.
MIN_TRAIN_ROWS = 200
MIN_CLASS_ROWS = 20


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
    """The declared inputs of the model (its version, label window, features, baseline, point-in-time
    views and data floor) and the SQL of the feature chain: any of them changing means a different
    model. Moving or reformatting the code changes none of them."""
    declared = (
        MODEL_VERSION,
        LABEL_DAYS,
        sorted(NOT_FEATURES),
        RULE_SCORE,
        POINT_IN_TIME,
        MIN_TRAIN_ROWS,
        MIN_CLASS_ROWS,
    )
    digest = hashlib.sha256(repr(declared).encode())
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
