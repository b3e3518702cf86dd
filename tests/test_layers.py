"""The package follows the data path: data -> models -> metrics / refine -> inference ->
evaluation -> training -> cli. No module imports (at the top or inside a function) one of a
later layer, so there are no import cycles between layers."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "atrous"
RANK = {
    "errors": 0,
    "data": 1,
    "models": 2,
    "checkpoint": 2,
    "metrics": 3,
    "refine": 3,
    "export": 3,
    "inference": 4,
    "loader": 5,
    "config_sections": 5,
    "config": 5,
    "evaluation": 6,
    "training": 7,
    "demo": 8,
    "serve": 8,
    "cli_args": 8,
    "cli": 9,
    "__init__": 10,
    "__main__": 10,
}


def _layer(module: str) -> str:
    return module.split(".")[0]


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported atrous module, line) for every import in ``path``, relative ones resolved."""
    package = path.relative_to(SRC).with_suffix("").parts
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level])
                target = ".".join(base + ([node.module] if node.module else []))
                names = (
                    [target]
                    if node.module
                    else [f"{target}.{a.name}".strip(".") for a in node.names]
                )
            elif node.module and node.module.startswith("atrous"):
                names = [node.module.removeprefix("atrous").lstrip(".")]
            else:
                continue
            out += [(n, node.lineno) for n in names if n]
        elif isinstance(node, ast.Import):
            out += [(a.name.removeprefix("atrous").lstrip("."), node.lineno)
                    for a in node.names if a.name.startswith("atrous.")]  # fmt: skip
    return out


# Predictor.from_checkpoint / from_file keep their user-facing names on the Predictor and hand
# the work to the loader (above inference, where the file kinds are known) when called.
ALLOWED = {("inference/predictor.py", "loader")}


def test_every_module_imports_only_its_own_or_earlier_layers():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        own = _layer(".".join(path.relative_to(SRC).with_suffix("").parts))
        assert own in RANK, f"{path}: add its layer to RANK"
        for target, line in _imports(path):
            layer = _layer(target)
            allowed = (str(path.relative_to(SRC)), layer) in ALLOWED
            if layer in RANK and layer != own and RANK[layer] > RANK[own] and not allowed:
                bad.append(f"{path.relative_to(SRC)}:{line} ({own}) imports {target} ({layer})")
    assert not bad, "\n".join(bad)


def test_no_module_is_over_400_lines():
    long = [
        f"{p.relative_to(SRC)}: {n}"
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    ]
    assert not long, long
