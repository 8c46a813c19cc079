"""The package's import graph: no cycle, and data flows down the stages, never back.

Read from the source (every import, those inside functions too), so a cycle that only bites when
a function first runs is caught as well, without importing anything.
"""

import ast
import graphlib
from pathlib import Path

import ecommerce_assets

PACKAGE = Path(ecommerce_assets.__file__).parent

# Each module may import its own stage and the stages before it. The top-level modules other than
# the two entry points are the foundation every stage may use.
STAGES = ["foundation", "project", "ingest", "run", "review", "analyses", "defs", "ml", "entry"]
ENTRY_POINTS = {"ecommerce_assets.definitions", "ecommerce_assets.cli"}
# The stages that run without Dagster: the engine, its benchmark floor, the CLI's compile and the
# review of a change (unit tests, plan, diff).
NO_DAGSTER = {"project", "ingest", "run", "review"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _stage(module: str) -> str:
    if module in ENTRY_POINTS:
        return "entry"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else "foundation"


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """The package's modules `path` imports, and the top-level names of everything else it imports."""
    ours, others = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
            if node.module.split(".")[0] != "ecommerce_assets":
                others.add(node.module.split(".")[0])
            ours.update(n if n in MODULES else node.module for n in names if n.startswith("ecommerce_assets"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                (ours if alias.name.startswith("ecommerce_assets") else others).add(
                    alias.name if alias.name.startswith("ecommerce_assets") else alias.name.split(".")[0]
                )
    return {m for m in ours if m in MODULES} - {_module_name(path)}, others


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def test_the_stages_are_the_packages():
    packages = {_stage(m) for m in MODULES}
    assert packages == set(STAGES), "a new package needs its place in STAGES"


def test_no_module_imports_itself_back_through_others():
    sorter = graphlib.TopologicalSorter({m: ours for m, (ours, _) in GRAPH.items()})
    try:
        sorter.prepare()
    except graphlib.CycleError as e:
        raise AssertionError(f"import cycle: {' -> '.join(e.args[1])}") from None


def test_each_stage_imports_only_itself_and_the_stages_before_it():
    backwards = [
        f"{module} ({_stage(module)}) imports {imported} ({_stage(imported)})"
        for module, (ours, _) in GRAPH.items()
        for imported in sorted(ours)
        if STAGES.index(_stage(imported)) > STAGES.index(_stage(module))
    ]
    assert backwards == []


def test_project_ingest_and_run_import_no_dagster():
    assert {
        module: sorted(o for o in others if o.startswith("dagster"))
        for module, (_, others) in GRAPH.items()
        if _stage(module) in NO_DAGSTER and any(o.startswith("dagster") for o in others)
    } == {}


# The run's engine-neutral modules reach an engine only through run/adapter.py's Adapter: DuckDB and
# Spark are imported by their own adapters' packages, never by what decides a run's order and publish.
ENGINES = {"duckdb", "pyspark", "py4j", "sqlglot"}
ADAPTERS = ("ecommerce_assets.run.duckdb", "ecommerce_assets.run.spark")


def test_the_run_reaches_an_engine_only_through_an_adapter():
    neutral = {m: GRAPH[m] for m in MODULES if _stage(m) == "run" and not m.startswith(ADAPTERS)}
    assert "ecommerce_assets.run.engine" in neutral and "ecommerce_assets.run.adapter" in neutral
    assert {
        module: sorted((others & ENGINES) | {m for m in ours if m.startswith(ADAPTERS)})
        for module, (ours, others) in neutral.items()
        if others & ENGINES or any(m.startswith(ADAPTERS) for m in ours)
    } == {}


def test_the_wheel_lists_every_package():
    """A package missing from pyproject.toml's list installs from a checkout (editable) and is absent
    from the wheel: found here in a second instead of by the deployment test."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {_module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert packages - listed == set()
