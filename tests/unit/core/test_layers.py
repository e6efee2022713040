"""Layers import downward only (STYLE C1): checked from the source, module by module."""

from __future__ import annotations

import ast
from pathlib import Path

import rgrid

SRC = Path(rgrid.__file__).parent
FOUNDATION = {
    "errors",
    "enums",
    "domain",
    "digests",
    "schemas",
    "paths",
    "compression",
    "money",
    "text",
    "bounds",
    "settings",
    "__init__",
    "__version__",
}

#: what each layer may import from rgrid, besides the foundation and itself
ALLOWED: dict[str, set[str]] = {
    "cli": {"client", "envs", "sandbox"},
    "client": {"envs"},  # the import → distribution table, to infer requirements
    "api": {"services", "store", "storage", "executor", "runner", "sandbox", "envs"},
    "services": {"store", "storage", "executor", "runner", "sandbox", "envs"},
    "store": set(),
    "storage": set(),
    "executor": {"runner"},
    "runner": {"envs", "sandbox"},
    "envs": {"sandbox"},  # builds run in the sandbox, as scripts do
    "sandbox": set(),
}


def _rgrid_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "rgrid":
                names = [f"rgrid.{alias.name}" for alias in node.names]
        found.update(n.split(".")[1] for n in names if n.startswith("rgrid.") and "." in n)
    return found


def _layer(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_layers_import_downward_only() -> None:
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        layer = _layer(path)
        if layer in FOUNDATION or layer == "__main__":
            allowed = FOUNDATION | ({"cli"} if layer == "__main__" else set())
        else:
            allowed = FOUNDATION | ALLOWED[layer] | {layer}
        for target in _rgrid_imports(path) - allowed:
            problems.append(f"{path.relative_to(SRC)} imports rgrid.{target}")
    assert problems == []


def test_the_cli_never_imports_the_server_side() -> None:
    for path in (SRC / "cli").rglob("*.py"):
        assert not _rgrid_imports(path) & {"api", "services", "store", "storage"}, path
