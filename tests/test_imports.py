"""The import picture of src/atrous: no circle and no import that runs back up the data path
(CONVENTIONS.md: data -> models -> metrics / refine / export -> tasks -> inference -> evaluation
-> training -> cli). Every import statement counts, function-local ones included, and
``from .pkg import name`` counts as importing ``pkg/__init__.py``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "atrous"
LAYERS = [
    "errors", "data", "models", "metrics", "refine", "export", "checkpoint", "tasks",
    "config_checks", "config_sections", "config", "loader", "structured", "inference",
    "evaluation", "training", "serve", "demo_tasks", "demo_vqa", "demo", "cli_args", "cli",
    "__main__",
]  # fmt: skip
"""Top-level packages and modules, lowest first; each may import only those before it."""


def _module(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = {_module(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    stem = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(stem + ([node.module] if node.module else []))
                # ``from . import x`` runs the package's __init__ too
                names = [base] if node.module else [base] + [f"{base}.{a.name}" for a in node.names]
            for name in names:
                while name and name not in files:  # a name inside a module -> the module
                    name = name.rpartition(".")[0]
                if name.startswith("atrous") and name and name != module:
                    graph[module].add(name)
    return graph


def _layer(module: str) -> int | None:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else None
    return LAYERS.index(top) if top in LAYERS else None


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_every_top_level_module_has_a_layer():
    graph = _graph()
    unplaced = sorted({m for m in graph if m != "atrous" and _layer(m) is None})
    assert not unplaced, f"add these to LAYERS: {unplaced}"


def test_no_import_circles():
    assert _circles(_graph()) == []


def test_no_import_runs_back_up_the_data_path():
    graph = _graph()
    upward = [
        f"{src} -> {dst}"
        for src, targets in graph.items()
        for dst in targets
        if dst != "atrous"
        and _layer(src) is not None
        and _layer(dst) is not None
        and _layer(dst) > _layer(src)  # type: ignore[operator]
    ]
    assert upward == []


def test_the_checker_finds_a_circle_and_an_upward_import():
    graph = {"atrous.data.a": {"atrous.models.b"}, "atrous.models.b": {"atrous.data.a"}}
    assert _circles(graph) == [["atrous.data.a", "atrous.models.b"]]
    assert _layer("atrous.data.a") < _layer("atrous.models.b")  # data may not import models


def test_the_graph_sees_function_local_and_package_imports(tmp_path: Path):
    # function-local imports are how the old circles hid: they must be counted
    pkg = tmp_path / "atrous"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "__init__.py").write_text("from .deeplab import DeepLab\n")
    (pkg / "models" / "deeplab.py").write_text(
        "class DeepLab:\n    def save(self):\n        from .registry import save\n"
    )
    (pkg / "models" / "registry.py").write_text("from . import deeplab\n")
    graph = _graph(pkg)
    assert graph["atrous.models.deeplab"] == {"atrous.models.registry"}
    assert graph["atrous.models.registry"] == {"atrous.models", "atrous.models.deeplab"}
    assert _circles(graph) == [["atrous.models", "atrous.models.deeplab", "atrous.models.registry"]]


def test_no_module_is_over_400_lines():
    long = [
        f"{p.relative_to(ROOT)}: {n}"
        for p in ROOT.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    ]
    assert not long, long
