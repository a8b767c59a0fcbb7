"""docs/architecture.md describes the tree as it is: every module its listing names exists, every
module of render/, train/ and shared/ is in the listing, and every test file the README or the
architecture page cites is there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("render", "train", "shared")


def listed_modules() -> set[str]:
    """The paths the 'Modules, one line each' block names, relative to the repository."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## Modules, one line each", 1)[1].split("```")[1]
    listed, package, folder = set(), "", ""
    for line in block.splitlines():
        names = line.strip().split("  ")[0]  # the name column ends at the first wide gap
        if not names:
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            package, folder = names.rstrip("/"), ""
            continue
        for name in (n.strip() for n in names.split(",")):
            if indent == 2 and name.endswith("/"):
                folder = name
            path = f"{package}/{name}" if indent == 2 else f"{package}/{folder}{name}"
            listed.add(path.rstrip("/"))
    return listed


def tree_modules() -> set[str]:
    return {str(p.relative_to(ROOT)) for package in PACKAGES
            for p in (ROOT / package).rglob("*.py") if p.name != "__init__.py"}


def test_every_module_the_architecture_page_lists_exists():
    missing = sorted(p for p in listed_modules() if not (ROOT / p).exists())
    assert not missing, f"docs/architecture.md names what is not there: {missing}"


def test_every_module_in_the_tree_is_on_the_architecture_page():
    unlisted = sorted(tree_modules() - listed_modules())
    assert not unlisted, f"docs/architecture.md does not list: {unlisted}"


def test_every_test_file_the_docs_cite_exists():
    cited = set()
    for doc in (ROOT / "README.md", ROOT / "docs" / "architecture.md"):
        cited |= set(re.findall(r"tests/[\w/]+\.py", doc.read_text()))
    assert cited, "the docs cite no test file: the pattern is wrong"
    assert sorted(c for c in cited if not (ROOT / c).is_file()) == []


def test_the_render_package_docstring_names_only_modules_that_exist():
    import dcign.render

    doc = dcign.render.__doc__ or ""
    named = re.findall(r"^    ([\w/.]+)\s", doc, flags=re.M)
    assert named, "the docstring lists no layer"
    assert sorted(n for n in named if not (ROOT / "render" / n).exists()) == []


def glossary_names() -> set[str]:
    """Every dotted `dcign.…` name the glossary's table cites."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("## Glossary", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`(dcign\.[\w.]+)`", table))


def _resolves(dotted: str) -> bool:
    """Import the longest module prefix, then follow attributes; a dataclass field or an
    annotated attribute counts as there."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            fields = getattr(obj, "__dataclass_fields__", {}) | getattr(obj, "__annotations__", {})
            if hasattr(obj, name):
                obj = getattr(obj, name)
            elif name in fields:
                obj = None
            else:
                return False
        return True
    return False


def test_every_name_the_glossary_gives_exists_in_the_code():
    names = glossary_names()
    assert len(names) > 20, "the glossary cites too few names: the pattern is wrong"
    assert sorted(n for n in names if not _resolves(n)) == []
