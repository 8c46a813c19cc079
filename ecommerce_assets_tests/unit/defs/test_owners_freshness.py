"""Every asset has an owner and a freshness policy, and Dagster's own freshness daemon judges it.

Real Definitions from real model files (a temporary copy of sql/ where a header changes), a real
DagsterInstance and the FreshnessDaemon's own iteration; no mocks, no frozen clock.
"""

from __future__ import annotations

import shutil
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

# Dagster's event and workspace internals: the public report_runless_asset_event takes no
# timestamp, and the daemon needs a workspace process context (as `dagster dev` gives it).
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.freshness import FreshnessDaemon

from ecommerce_assets.definitions import build_definitions
from ecommerce_assets.errors import ModelError
from ecommerce_assets.ml.churn.assets import TRAINING_ASSETS
from ecommerce_assets.paths import SQL_DIR
from ecommerce_assets.settings import Settings

# The defaults, written out by hand: group (layer) -> owner.
OWNER_BY_GROUP = {
    "raw": "team:data-engineering",
    "staging": "team:data-engineering",
    "intermediate": "team:data-engineering",
    "marts": "team:analytics",
    "ml": "team:analytics",
    "analyses": "team:analytics",
    "churn": "team:analytics",
}


def settings(**env: str) -> Settings:
    return Settings.from_env(env)


def asset_nodes(defs: dg.Definitions) -> dict[str, object]:
    graph = defs.resolve_asset_graph()
    return {k.to_user_string(): graph.get(k) for k in graph.get_all_asset_keys()}


def copy_sql(tmp_path: Path) -> Path:
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    return sql_dir


def set_owner(path: Path, owner: str) -> int:
    """Writes `owner: <owner>` as the header's first key; returns its file line."""
    text = path.read_text()
    assert text.startswith("/*\n"), path
    path.write_text(f"/*\nowner: {owner}\n{text[3:]}")
    return 2


def test_every_asset_has_its_layers_owner_by_default():
    nodes = asset_nodes(build_definitions(settings()))
    assert {node.group_name for node in nodes.values()} == set(OWNER_BY_GROUP)
    for name, node in nodes.items():
        assert list(node.owners) == [OWNER_BY_GROUP[node.group_name]], name


def test_a_header_owner_overrides_the_layer_default(tmp_path):
    sql_dir = copy_sql(tmp_path)
    set_owner(sql_dir / "marts/dim_customer_segments.sql", "ana@shop.com")
    set_owner(sql_dir / "staging/stg_orders.sql", "growth")
    set_owner(sql_dir / "ml/ml_customer_features.sql", "team:ml-platform")
    # A new layer belongs to the documented default (models.DEFAULT_OWNER).
    (sql_dir / "reports").mkdir()
    (sql_dir / "reports/orders_per_day.sql").write_text(
        "select order_date, count(*) as orders from staging.stg_orders group by order_date\n"
    )

    nodes = asset_nodes(build_definitions(settings(), sql_dir=sql_dir))

    assert nodes["dim_customer_segments"].owners == ["ana@shop.com"]
    assert nodes["stg_orders"].owners == ["team:growth"]
    assert nodes["ml_customer_features"].owners == ["team:ml-platform"]
    assert nodes["orders_per_day"].owners == ["team:data-engineering"]
    # The others keep their layer's owner.
    assert nodes["fct_customer_metrics"].owners == ["team:analytics"]
    assert nodes["stg_customers"].owners == ["team:data-engineering"]


@pytest.mark.parametrize(
    ("owner", "message"),
    [
        ("Ana Smith", "use a team name"),
        ("'team:'", "use a team name"),
        ("ana@", "use a team name"),
        ("42", "Input should be a valid string"),
        ("[analytics, growth]", "Input should be a valid string"),
    ],
)
def test_a_bad_owner_is_an_error_naming_the_file_and_line(tmp_path, owner, message):
    sql_dir = copy_sql(tmp_path)
    path = sql_dir / "marts/fct_product_performance.sql"
    line = set_owner(path, owner)
    with pytest.raises(ModelError) as error:
        build_definitions(settings(), sql_dir=sql_dir)
    assert str(error.value).startswith(f"{path}:{line}: owner: "), str(error.value)
    assert message in str(error.value)


@pytest.mark.parametrize(("env", "hours"), [({}, 26), ({"ECOMMERCE_FRESHNESS_HOURS": "30"}, 30)])
def test_every_asset_carries_the_configured_freshness_window(env, hours):
    nodes = asset_nodes(build_definitions(settings(**env)))
    expected = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=hours))
    weekly = dg.FreshnessPolicy.time_window(fail_window=timedelta(days=7, hours=hours))  # the churn training
    for name, node in nodes.items():
        # The property the FreshnessDaemon reads.
        assert node.freshness_policy_or_from_metadata == (weekly if name in TRAINING_ASSETS else expected), name


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "a day", ""])
def test_a_bad_freshness_window_names_the_setting(value):
    with pytest.raises(ValueError, match=f"ECOMMERCE_FRESHNESS_HOURS={value!r}: use a whole number"):
        settings(ECOMMERCE_FRESHNESS_HOURS=value)


def report_materialization(instance: dg.DagsterInstance, name: str, at: float) -> None:
    """A runless materialization of `name` recorded at timestamp `at` (what an external run reports)."""
    instance.report_dagster_event(
        DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            event_specific_data=StepMaterializationData(dg.AssetMaterialization(name)),
            job_name=RUNLESS_JOB_NAME,
        ),
        run_id=RUNLESS_RUN_ID,
        timestamp=at,
    )


def test_dagsters_freshness_daemon_passes_a_recent_table_and_fails_a_stale_one(tmp_path):
    # The code location the daemon loads: the project's definitions with a 5-hour window.
    location = tmp_path / "location.py"
    location.write_text(
        textwrap.dedent(
            """\
            from ecommerce_assets.definitions import build_definitions
            from ecommerce_assets.settings import Settings

            defs = build_definitions(Settings.from_env({"ECOMMERCE_FRESHNESS_HOURS": "5"}))
            """
        )
    )
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(python_file=str(location), attribute="defs"), location_name="ecommerce_assets"
    )
    fresh, stale, never = dg.AssetKey("stg_orders"), dg.AssetKey("raw_orders"), dg.AssetKey("fct_customer_metrics")
    hour = 3600

    with (
        dg.instance_for_test() as instance,
        WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as workspace,
    ):
        assert workspace.create_request_context().get_code_location_error("ecommerce_assets") is None

        def daemon_states() -> dict[dg.AssetKey, FreshnessState]:
            list(FreshnessDaemon().run_iteration(workspace))  # one iteration of the daemon `dagster dev` runs
            records = instance.get_freshness_state_records([fresh, stale, never])
            return {key: record.freshness_state for key, record in records.items()}

        now = time.time()
        report_materialization(instance, fresh.to_user_string(), now - 4 * hour)
        report_materialization(instance, stale.to_user_string(), now - 6 * hour)
        assert daemon_states() == {
            fresh: FreshnessState.PASS,
            stale: FreshnessState.FAIL,
            never: FreshnessState.UNKNOWN,
        }

        # A new materialization makes the stale table fresh again at the daemon's next iteration.
        report_materialization(instance, stale.to_user_string(), time.time())
        assert daemon_states()[stale] == FreshnessState.PASS
