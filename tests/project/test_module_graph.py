"""The code's shape is checked, not hoped for: no import cycles anywhere (function-level imports
count), render's layers only import downward, evaluation never imports the training loop nor
the loop evaluation (dcign-train's command alone wires the two), and the two halves never
import each other; and only the writers import the store writer (schema ← reader ← writer)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"render": "dcign.render", "train": "dcign.train", "shared": "dcign.shared"}
# render's layers, bottom to top: a module may import its own layer and those below it.
RENDER_LAYERS = ("dcign.render.objects", "dcign.render.renderer",
                 "dcign.render.generators", "dcign.render.writer", "dcign.render.cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    parts = PACKAGES[parts[0]].split(".") + parts[1:]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for top in PACKAGES for p in (REPO / top).rglob("*.py")}


def _imports(module: str, path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(project modules imported, external top-level packages imported), at any depth."""
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            prefix = (".".join(base[: len(base) - node.level + 1] + [node.module or ""]).strip(".")
                      if node.level else node.module or "")
            targets = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            if not target.startswith("dcign"):
                outside.add(target.split(".")[0])
                continue
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module and not module.startswith(target + "."):
                inside.add(target)
    return inside, outside


@pytest.fixture(scope="module")
def graph() -> dict[str, tuple[set[str], set[str]]]:
    modules = _modules()
    return {m: _imports(m, p, set(modules)) for m, p in modules.items()}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_through_a_cycle(graph):
    assert _cycles({m: inside for m, (inside, _) in graph.items()}) == []


def _layer(module: str) -> int | None:
    for rank, layer in enumerate(RENDER_LAYERS):
        if module == layer or module.startswith(layer + "."):
            return rank
    return None


def test_every_render_module_belongs_to_a_layer(graph):
    loose = [m for m in graph if m.startswith("dcign.render.") and _layer(m) is None]
    assert loose == []


def test_render_layers_import_only_their_own_layer_and_those_below(graph):
    upward = [(m, t) for m, (inside, _) in graph.items() if _layer(m) is not None
              for t in inside if (_layer(t) or 0) > _layer(m)]
    assert upward == []


def test_evaluation_never_imports_the_training_loop_or_its_command(graph):
    offending = [(m, t) for m, (inside, _) in graph.items() if m.startswith("dcign.train.eval")
                 for t in inside if t in ("dcign.train.loop", "dcign.train.cli")]
    assert offending == []


def test_the_training_loop_never_imports_evaluation(graph):
    inside, _ = graph["dcign.train.loop"]
    assert [t for t in inside if t.startswith("dcign.train.eval")] == []


# Downstream of evaluation: the tools that ship a finished run with its evaluation
# (train/shipped/ship.py, check.py). The shipped package itself (names → files) stays below.
SHIPPING_TOOLS = ("dcign.train.shipped.ship", "dcign.train.shipped.check")


def test_only_the_training_command_wires_evaluation_into_training(graph):
    """Data flows one way: train/ → train/eval/, through dcign-train's command alone; only
    the shipping tools, which package runs that are already trained, sit above evaluation."""
    offending = [(m, t) for m, (inside, _) in graph.items()
                 if m.startswith("dcign.train") and not m.startswith("dcign.train.eval")
                 and m != "dcign.train.cli" and m not in SHIPPING_TOOLS
                 for t in inside if t.startswith("dcign.train.eval")]
    assert offending == []


def test_the_shipped_names_sit_below_evaluation_and_the_shipping_tools_above_it(graph):
    """Evaluation resolves `faces64` through dcign.train.shipped, so that package never
    imports evaluation; nothing but the shipping tools' own command imports them."""
    assert [t for t in graph["dcign.train.shipped"][0] if t.startswith("dcign.train.eval")] == []
    importers = [m for m, (inside, _) in graph.items() if set(SHIPPING_TOOLS) & inside
                 and m not in SHIPPING_TOOLS]
    assert importers == []


STORE_SCHEMA, STORE_READER, STORE_WRITER = ("dcign.shared.store_schema", "dcign.shared.store",
                                             "dcign.shared.store_writer")
# the modules that write stores: render's writer and its command (render, repair, import),
# the schema migration, and the analytic test stores of train/synthetic.py
STORE_WRITERS = ("dcign.render.writer", "dcign.render.cli", "dcign.shared.migrate",
                 "dcign.train.synthetic")


def _is_under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_only_the_writers_import_the_store_writer(graph):
    """Readers (the trainer, evaluation, verify, preview, dcign-store) cannot write a store:
    writing lives in shared/store_writer.py, which only the writers import."""
    importers = sorted(m for m, (inside, _) in graph.items() if STORE_WRITER in inside)
    assert importers, "nothing imports the store writer: the rule is checking nothing"
    assert [m for m in importers if not _is_under(m, STORE_WRITERS)] == []


def test_the_store_schema_is_below_the_reader_and_the_reader_below_the_writer(graph):
    """schema ← reader ← writer: the schema imports neither, the reader not the writer."""
    assert graph[STORE_SCHEMA][0] & {STORE_READER, STORE_WRITER} == set()
    assert STORE_WRITER not in graph[STORE_READER][0]
    assert STORE_SCHEMA in graph[STORE_READER][0] and STORE_READER in graph[STORE_WRITER][0]


def test_the_two_halves_never_import_each_other_and_shared_imports_neither(graph):
    rules = {"dcign.render": ({"dcign.train"}, {"torch"}),
             "dcign.train": ({"dcign.render"}, {"pyrender", "OpenGL", "trimesh"}),
             "dcign.shared": ({"dcign.render", "dcign.train"}, {"torch", "pyrender", "OpenGL"})}
    offending = []
    for module, (inside, outside) in graph.items():
        for prefix, (banned_modules, banned_packages) in rules.items():
            if module.startswith(prefix):
                offending += [(module, t) for t in inside
                              if any(t.startswith(b) for b in banned_modules)]
                offending += [(module, p) for p in outside & banned_packages]
    assert offending == []
