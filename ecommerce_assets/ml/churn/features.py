"""The churn model's training data: point-in-time features and labels at monthly cutoffs.

The label: a customer who existed at a cutoff date churned when they placed no completed order in
the LABEL_DAYS days after it. The seed's `is_churn_risk` is not used as a target: it is a rule on
`recency_days`, itself a feature, so a model would only relearn the rule.

Features at a cutoff come from the project's own model SQL (every model `ml_customer_features`
depends on, from `load_project()`), run on staging rows filtered to what was known at the cutoff,
with the cutoff as the analysis date: the feature logic is never copied. The work runs in a
scratch in-memory database attached to the run's connection; only the final tables are written
to the warehouse, each in one `create or replace table ... as` statement. No Dagster here.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb

from ecommerce_assets.project.models import Model, retarget

LABEL_DAYS = 90
FEATURE_MODEL = "ml_customer_features"
TRAINING_TABLE = "ml.churn_training_data"
SCRATCH = "churn_pit"  # the attached in-memory database the point-in-time chain runs in

# Columns of ml_customer_features that are not features: keys, timestamps, and the seed's rule
# (is_churn_risk), which is the baseline the model is judged against, not an input.
NOT_FEATURES = frozenset({"customer_id", "is_churn_risk", "country", "analysis_date", "feature_generated_at"})
# How each staging relation looks at a cutoff: orders placed by then (with their current status:
# the data keeps no status history), their lines, customers signed up by then. A new staging
# dependency of the feature chain must be added here, or building the training data fails.
POINT_IN_TIME = {
    "stg_orders": "select * from {scratch}.sample_orders where order_date <= {cutoff}",
    "stg_order_items": "select i.* from {scratch}.sample_items as i semi join {scratch}.stg_orders as o using (order_id)",
    "stg_customers": "select * from {scratch}.sample_customers where customer_created_at <= {cutoff}",
    "stg_products": "select * from staging.stg_products",
}


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


def training_features(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The feature columns of TRAINING_TABLE, in table order."""
    described = con.execute(f"describe {TRAINING_TABLE}").fetchall()
    skip = NOT_FEATURES | {"split", "cutoff_date", "churn_risk", "label_window_end", "churned"}
    return [name for name, kind, *_ in described if name not in skip and kind.upper().startswith(_NUMERIC)]
