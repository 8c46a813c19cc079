"""The README's map of the packages names every module where it is, and links every docs/ page."""

import re

from ecommerce_assets_tests.conftest import ROOT


def _map() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## How it is built") :]
    return section[section.index("```\n") + 4 : section.index("\n```", section.index("```\n") + 4)].splitlines()


def test_the_map_names_every_module_under_its_package():
    """Each line of the map under `ecommerce_assets/` is `name.py` or `folder/` (indented two spaces a
    level) or `folder/name.py`; together they are exactly the package's modules."""
    mapped, folders = set(), []
    for line in _map():
        entry = line.split()[0] if line.strip() else ""
        depth = (len(line) - len(line.lstrip())) // 2
        if depth == 0:
            folders = [entry.rstrip("/")] if entry == "ecommerce_assets/" else []
            continue
        if not folders:
            continue
        folders = folders[:depth]
        if entry.endswith("/"):
            folders.append(entry.rstrip("/"))
        elif entry.endswith(".py"):
            mapped.add("/".join([*folders, entry]))
    modules = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "ecommerce_assets").rglob("*.py") if p.name != "__init__.py"
    }
    assert mapped == modules


def test_every_docs_page_is_linked_and_every_link_resolves():
    readme = (ROOT / "README.md").read_text()
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)\)", readme))
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")}
    assert linked == pages
    for page in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([\w.-]+\.md)(?:#[\w-]+)?\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} links {target}"
