"""Hand-written work after the `analyses` models' SQL: their charts.

The analyses themselves are SQL files in `sql/analyses/`, built by the engine like every other
model (with the file exports their headers declare). What SQL cannot do lives here, as
`after_build` functions `(con, model, run) -> metadata` that run right after the model's table is
created: each draws a PNG chart to `<output_dir>/charts/` and shows it inline in the UI.

`after_build(models)` returns the name -> function mapping `build_warehouse` takes.

matplotlib is imported inside the chart functions only: loading the definitions must not pay
for it (the code server reloads them often), only a run that draws a chart does.
"""

from __future__ import annotations

import base64
import functools
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import dagster as dg
import duckdb

from ecommerce_assets.errors import AnalysisOutputError, ModelError
from ecommerce_assets.project.models import Model
from ecommerce_assets.run.duckdb.adapter import AfterBuild
from ecommerce_assets.run.duckdb.context import Run
from ecommerce_assets.run.outputs import output_path

DPI = 100


# --- charts ---------------------------------------------------------------------------------

# Figure sizes in inches at DPI: the PNGs are exactly this many pixels (no tight bbox).
RFM_HEATMAP_SIZE = (11.0, 4.5)
SEGMENT_CHART_SIZE = (10.0, 5.0)
TIER_CHART_SIZE = (9.0, 5.0)
TIER_ORDER = ("Star", "Performer", "Average", "Underperformer")
MAX_CATEGORIES = 9  # more categories than this are stacked together as "Other"

_MATPLOTLIB = threading.Lock()


def _chart(draw: AfterBuild) -> AfterBuild:
    """One chart at a time: matplotlib is not thread-safe, and the factory may build two analyses at once."""

    @functools.wraps(draw)
    def one_at_a_time(con: duckdb.DuckDBPyConnection, model: Model, run: Run) -> dict:
        with _MATPLOTLIB:
            return draw(con, model, run)

    return one_at_a_time


@_chart
def rfm_heatmap(con: duckdb.DuckDBPyConnection, model: Model, run: Run) -> dict:
    """Recency x frequency grid of rfm_score_grid: customer count and average value per cell."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    counts = np.zeros((5, 5))
    values = np.full((5, 5), np.nan)
    rows = con.execute(
        f"select recency_score, frequency_score, customer_count, avg_value from {run.relation(model.table)}"
    ).fetchall()
    for recency, frequency, count, value in rows:
        if recency in range(1, 6) and frequency in range(1, 6):
            counts[frequency - 1, recency - 1] = count
            values[frequency - 1, recency - 1] = float(value)

    fig = _figure(RFM_HEATMAP_SIZE)
    panels = [(counts, "Customers", "Blues"), (values, "Average value", "Greens")]
    for i, (grid, title, cmap) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, 2, i)
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, origin="lower", vmin=0)
        colorbar = fig.colorbar(image, ax=ax, shrink=0.85, format="{x:,.0f}")
        colorbar.locator = MaxNLocator(integer=True)
        colorbar.update_ticks()
        ax.set_xticks(range(5), [str(s) for s in range(1, 6)])
        ax.set_yticks(range(5), [str(s) for s in range(1, 6)])
        ax.set_xlabel("Recency score (5 = ordered recently)")
        ax.set_ylabel("Frequency score (5 = most orders)")
        ax.set_title(title)
        peak = np.nanmax(grid) if np.isfinite(grid).any() else 0
        for (y, x), cell in np.ndenumerate(grid):
            if counts[y, x]:  # label occupied cells only
                ax.text(
                    x,
                    y,
                    f"{cell:,.0f}",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if peak and cell > peak * 0.6 else "black",
                )
    fig.suptitle(f"RFM grid: {int(counts.sum()):,} customers")
    table = [["frequency \\ recency", *map(str, range(1, 6))]]
    table += [[str(f), *(f"{counts[f - 1, r - 1]:,.0f}" for r in range(1, 6))] for f in range(5, 0, -1)]
    return _save_chart(fig, run, model, "rfm_heatmap", "Customers per RFM cell", table)


@_chart
def segment_chart(con: duckdb.DuckDBPyConnection, model: Model, run: Run) -> dict:
    """Historical revenue next to predicted 12-month CLV per segment, from segment_distribution."""
    rows = con.execute(
        f"select customer_segment, total_revenue, total_predicted_value, customer_count from {run.relation(model.table)}"
        " order by total_revenue desc, customer_segment"
    ).fetchall()
    fig = _figure(SEGMENT_CHART_SIZE)
    ax = fig.add_subplot(1, 1, 1)
    if rows:
        x = range(len(rows))
        width = 0.4
        ax.bar([i - width / 2 for i in x], [float(r[1]) for r in rows], width, label="Revenue to date")
        ax.bar([i + width / 2 for i in x], [float(r[2]) for r in rows], width, label="Predicted CLV (12 months)")
        ax.set_xticks(list(x), [f"{r[0]}\n({r[3]:,} customer{'s' if r[3] != 1 else ''})" for r in rows], fontsize=8)
        ax.legend()
    else:
        _no_data(ax)
    ax.set_ylabel("Value")
    ax.set_title("Revenue and predicted CLV by segment")
    ax.yaxis.set_major_formatter("{x:,.0f}")
    fig.subplots_adjust(bottom=0.18)
    peak = max((float(r[1]) for r in rows), default=0.0)
    table = [["segment", "customers", "revenue", "predicted CLV", ""]]
    table += [[r[0], f"{r[3]:,}", f"{r[1]:,.0f}", f"{r[2]:,.0f}", _bar(float(r[1]), peak)] for r in rows]
    return _save_chart(fig, run, model, "segment_value", "Revenue and predicted CLV by segment", table)


@_chart
def product_tier_chart(con: duckdb.DuckDBPyConnection, model: Model, run: Run) -> dict:
    """Revenue by performance tier, stacked by category, over all products of fct_product_performance."""
    rows = con.execute(
        f"""
        select performance_tier, category, coalesce(sum(revenue), 0)::double as revenue
        from {run.relation("marts.fct_product_performance")}
        group by all
        """
    ).fetchall()
    by_category: dict[str, float] = {}
    for _, category, revenue in rows:
        by_category[category or "(none)"] = by_category.get(category or "(none)", 0.0) + revenue
    ranked = sorted(by_category, key=lambda c: (-by_category[c], c))
    shown = ranked if len(ranked) <= MAX_CATEGORIES else [*ranked[: MAX_CATEGORIES - 1], "Other"]
    tiers = [t for t in TIER_ORDER if any(r[0] == t for r in rows)]
    tiers += sorted({r[0] for r in rows} - set(TIER_ORDER) - {None}, key=str)
    stacks = {c: [0.0] * len(tiers) for c in shown}
    for tier, category, revenue in rows:
        if tier in tiers:
            category = category or "(none)"
            stacks[category if category in stacks else "Other"][tiers.index(tier)] += revenue

    fig = _figure(TIER_CHART_SIZE)
    ax = fig.add_subplot(1, 1, 1)
    if tiers:
        bottom = [0.0] * len(tiers)
        for category, heights in stacks.items():
            ax.bar(tiers, heights, bottom=bottom, label=category)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax.legend(fontsize=8, title="Category")
    else:
        _no_data(ax)
    ax.set_ylabel("Revenue")
    ax.set_title("Revenue by product performance tier and category")
    ax.yaxis.set_major_formatter("{x:,.0f}")
    revenue = [sum(heights[i] for heights in stacks.values()) for i in range(len(tiers))]
    table = [
        ["tier", "revenue", ""],
        *([t, f"{r:,.0f}", _bar(r, max(revenue))] for t, r in zip(tiers, revenue, strict=True)),
    ]
    return _save_chart(fig, run, model, "revenue_by_tier_and_category", "Revenue by product performance tier", table)


def warm_up_matplotlib() -> None:
    """Import matplotlib and read its font list ahead of the first chart (~0.5 s).

    The factory calls this on a spare thread when a run starts that will draw a chart: the import
    then overlaps the raw loads, where DuckDB holds no Python lock, instead of delaying the chart.
    """
    try:
        from matplotlib import font_manager
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401

        font_manager.findfont("sans-serif")
    except Exception:  # the chart itself reports any problem, on its asset
        pass


def _figure(size: tuple[float, float]):
    # Agg through the object API: no pyplot, no global backend state, works without a display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _no_data(ax) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])


def _save_chart(fig, run: Run, model: Model, name: str, title: str, table: list[list[str]]) -> dict:
    """The chart as `<output_dir>/charts/<name>.png` and three metadata entries, `title` first.

    Dagster's UI renders a markdown entry inline only below 1,000 characters, which no PNG is: the
    entry named `title` is the chart's numbers as a small table that shows on the asset page as it
    is; the PNG itself is one click away ("[Show Markdown]") and on disk.
    """
    path = output_path(run.output_dir, "charts", f"{name}.png")

    def draw(staged: str) -> bytes:
        fig.savefig(staged, format="png", dpi=DPI)
        return Path(staged).read_bytes()

    encoded = base64.b64encode(run.stage_file(model.name, path, draw)).decode("ascii")
    return {
        title: dg.MetadataValue.md(inline_table(table)),
        f"{title}: chart": dg.MetadataValue.md(f"![{name}](data:image/png;base64,{encoded})"),
        f"{title}: PNG file": dg.MetadataValue.path(str(path)),
    }


INLINE_MARKDOWN = 1000  # characters: the UI shows a longer markdown entry behind a click


def inline_table(rows: list[list[str]]) -> str:
    """A markdown table (first row: the header) short enough to render inline, rows cut from the end."""
    header, body = rows[0], rows[1:]
    for shown in range(len(body), -1, -1):
        lines = [header, ["---"] * len(header), *body[:shown]]
        md = "\n".join("| " + " | ".join(line) + " |" for line in lines)
        if shown < len(body):
            md += f"\n\n_{len(body) - shown} more rows in the chart_"
        if len(md) < INLINE_MARKDOWN:
            return md
    return md


def _bar(value: float, peak: float, width: int = 16) -> str:
    return "█" * round(width * value / peak) if peak > 0 else ""


# --- registry -------------------------------------------------------------------------------

# Model name -> its charts, drawn after the model's SQL. Exports are declared in the SQL headers.
EXTRAS: dict[str, tuple[AfterBuild, ...]] = {
    "rfm_score_grid": (rfm_heatmap,),
    "segment_distribution": (segment_chart,),
    "top_products_by_tier": (product_tier_chart,),
}


def after_build(models: Iterable[Model], extras: Mapping[str, Sequence[AfterBuild]] = EXTRAS) -> dict[str, AfterBuild]:
    """The `after_build` mapping for `build_warehouse`: each model's charts.

    Fails when `extras` names a model that does not exist, so a renamed SQL file cannot silently
    lose its chart.
    """
    models = list(models)
    names = {m.name for m in models}
    unknown = sorted(set(extras) - names)
    if unknown:
        raise ModelError(f"analyses.EXTRAS names models that do not exist: {unknown}")
    hooks: dict[str, AfterBuild] = {}
    for model in models:
        if model.name in extras:
            hooks[model.name] = _chain(extras[model.name])
            hooks[model.name].warm_up = warm_up_matplotlib
    return hooks


def _chain(steps: Sequence[AfterBuild]) -> AfterBuild:
    def run_all(con: duckdb.DuckDBPyConnection, model: Model, run: Run) -> dict:
        metadata: dict[str, object] = {}
        for step in steps:
            try:
                metadata |= step(con, model, run)
            except (duckdb.Error, ModelError):
                raise
            except Exception as e:  # a chart that cannot be drawn or written fails this asset only
                raise AnalysisOutputError(f"{step.__name__}: {type(e).__name__}: {e}") from e
        return metadata

    run_all.__name__ = "+".join(s.__name__ for s in steps)
    return run_all
