"""Imports point one way, and no two modules import each other (directly or round a loop).

Every ``import`` in ``paddle_mm/`` and ``hardware/`` is read with :mod:`ast`: module-level and function-level,
absolute and relative. Each module gets a layer (``LAYERS``, most specific prefix wins); a module may import
its own layer or a lower one, never a higher one. Layers, top to bottom::

    5  tools/                                         entry points
    4  engine/ export/ inference/ package/ serving/   runners of trained models; zero_shot.py (it evaluates)
    3  tasks/                                         what differs per task (model, loss, evaluation)
    2  models/ data/ text/ vision/ demo/              the library proper; tokenizer.py (the tokenizer facade)
       config.py, config_schema.py                   beside models: the schema validates model names
    1  losses.py optim.py metrics.py distributed.py   flat leaves each with one dict + build_*
    0  io.py, hardware/, paddle_mm/__init__.py        weight files and atomic writes; devices; the lazy facade
                                                      (hardware/ never imports paddle_mm at all)

A cycle is any loop in the module graph, the edges a package's ``__init__`` draws to its own submodules
included (a function-level import hides a cycle from Python, not from this test).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("paddle_mm", "hardware")

LAYERS = {
    "tools": 5,
    "paddle_mm.engine": 4,
    "paddle_mm.export": 4,
    "paddle_mm.inference": 4,
    "paddle_mm.package": 4,
    "paddle_mm.serving": 4,
    "paddle_mm.zero_shot": 4,
    "paddle_mm.tasks": 3,
    "paddle_mm.models": 2,
    "paddle_mm.data": 2,
    "paddle_mm.text": 2,
    "paddle_mm.vision": 2,
    "paddle_mm.demo": 2,
    "paddle_mm.tokenizer": 2,
    "paddle_mm.config": 2,
    "paddle_mm.config_schema": 2,
    "paddle_mm.losses": 1,
    "paddle_mm.optim": 1,
    "paddle_mm.metrics": 1,
    "paddle_mm.distributed": 1,
    "paddle_mm.io": 0,
    "hardware": 0,
    "paddle_mm": 0,
}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.source} -> {self.target}"


def layer_of(module: str) -> int:
    """The layer of the longest ``LAYERS`` prefix of ``module``; a module no prefix covers is an error."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(f"module {module!r} has no layer; add it (or its package) to LAYERS in tests/test_layers.py")


def scanned_modules(root: Path = ROOT) -> dict[str, Path]:
    """``{dotted name: file}`` for every .py under the scanned packages (a package is its ``__init__``)."""
    modules = {}
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imported_names(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        parts = package.split(".")
        if node.level - 1 > len(parts) - 1:
            raise ValueError(f"relative import of level {node.level} climbs above {package!r} (line {node.lineno})")
        base = ".".join(parts[: len(parts) - (node.level - 1)])
        base = f"{base}.{node.module}" if node.module else base
    else:
        base = node.module or ""
    return [f"{base}.{alias.name}" for alias in node.names]  # `from pkg import sub` may name a module


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest scanned module that ``name`` is, or lies in; tools.* as its own; None for third-party."""
    if name.split(".")[0] == "tools":
        return name.rsplit(".", 1)[0] if name.count(".") > 1 else name
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_edges(modules: dict[str, Path]) -> list[Edge]:
    """Every import (anywhere in a file) from a scanned module to a scanned module or a tool, self-imports left out."""
    edges = []
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            for name in _imported_names(node, package):
                target = _resolve(name, modules)
                if target is not None and target != module:
                    edges.append(Edge(module, target, path, node.lineno))
    return sorted(set(edges), key=lambda e: (str(e.path), e.line, e.target))


def upward_edges(edges: list[Edge]) -> list[Edge]:
    return [e for e in edges if layer_of(e.target) > layer_of(e.source)]


def cycles(edges: list[Edge]) -> list[list[Edge]]:
    """Every two-module loop, then one loop per other strongly connected component (Tarjan, iterative)."""
    graph: dict[str, list[Edge]] = {}
    for e in edges:
        graph.setdefault(e.source, []).append(e)
        graph.setdefault(e.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            out = graph[node]
            if i < len(out):
                work.append((node, i + 1))
                nxt = out[i].target
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = set()
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.add(top)
                    if top == node:
                        break
                if len(component) > 1:
                    components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    pairs = {(e.source, e.target): e for e in edges}
    back = [(e, pairs.get((e.target, e.source))) for e in pairs.values() if e.source < e.target]
    loops = [[e, b] for e, b in back if b is not None]
    in_pairs = {m for loop in loops for e in loop for m in (e.source, e.target)}
    return loops + [_loop(graph, min(c - in_pairs), c) for c in components if not c <= in_pairs]


def _loop(graph: dict[str, list[Edge]], start: str, component: set[str]) -> list[Edge]:
    """A shortest loop from ``start`` back to itself inside one component (breadth-first)."""
    previous: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for e in graph[node]:
                if e.target not in component:
                    continue
                if e.target == start:
                    loop = [e]
                    while loop[0].source != start:
                        loop.insert(0, previous[loop[0].source])
                    return loop
                if e.target not in previous:
                    previous[e.target] = e
                    following.append(e.target)
        frontier = following
    raise AssertionError(f"no loop through {start} in its component {sorted(component)}")


# ----------------------------------------------------------------------------- the tests


def test_every_module_has_a_layer():
    unplaced = []
    for module in scanned_modules():
        try:
            layer_of(module)
        except KeyError as err:
            unplaced.append(str(err))
    assert not unplaced, "\n".join(unplaced)


def test_no_upward_import():
    found = upward_edges(import_edges(scanned_modules()))
    report = [f"{e}  (layer {layer_of(e.source)} imports layer {layer_of(e.target)})" for e in found]
    assert not found, "imports that point up; move the shared piece down:\n" + "\n".join(report)


def test_hardware_imports_no_paddle_mm():
    """hardware/ sits beside io.py but is its own package: it imports paddle, never paddle_mm."""
    found = [
        e
        for e in import_edges(scanned_modules())
        if e.source.startswith("hardware") and e.target.startswith("paddle_mm")
    ]
    assert not found, "hardware imports paddle_mm:\n" + "\n".join(map(str, found))


def test_no_import_cycle():
    found = cycles(import_edges(scanned_modules()))
    report = ["\n".join(f"    {e}" for e in loop) for loop in found]
    assert not found, "import cycles; move the shared piece down:\n" + "\n".join(report)


def test_walker_sees_function_level_and_relative_imports(tmp_path):
    """The walker itself: an upward function-level relative import and a two-module loop are both reported."""
    pkg = tmp_path / "paddle_mm"
    (pkg / "models").mkdir(parents=True)
    (pkg / "engine").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "__init__.py").write_text("def f():\n    from ..engine import run\n")
    (pkg / "engine" / "__init__.py").write_text("")
    (pkg / "engine" / "run.py").write_text("import paddle_mm.models\n")
    (tmp_path / "hardware").mkdir()
    (tmp_path / "hardware" / "__init__.py").write_text("import os\n")
    modules = scanned_modules(tmp_path)
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        edges = import_edges(modules)
        assert [str(e) for e in upward_edges(edges)] == [
            "paddle_mm/models/__init__.py:2: paddle_mm.models -> paddle_mm.engine.run"
        ]
        (loop,) = cycles(edges)
        assert {(e.source, e.target) for e in loop} == {
            ("paddle_mm.engine.run", "paddle_mm.models"),
            ("paddle_mm.models", "paddle_mm.engine.run"),
        }
    finally:
        ROOT = saved
