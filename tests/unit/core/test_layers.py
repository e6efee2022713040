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
    "proc",
    "text",
    "bounds",
    "tasks",
    "settings",
    "__init__",
    "__version__",
}

#: what each layer may import from rgrid, besides the foundation and itself
ALLOWED: dict[str, set[str]] = {
    "cli": {"client", "envs", "sandbox"},
    "client": {"envs"},  # the import → distribution table, to infer requirements
    "api": {"services", "store", "storage", "executor", "runner", "sandbox", "envs", "autoscaler"},
    "services": {"store", "storage", "executor", "runner", "sandbox", "envs", "autoscaler"},
    # the policy and the machine providers: below the services, beside the executor
    "autoscaler": {"runner"},  # a local node deleted unmounts what its runner left
    "store": set(),
    "storage": set(),
    "executor": {
        "runner",
        "sandbox",
        "client",
        "autoscaler",  # a Ray node's name is the autoscaler's resource
    },  # a node's runner reaches the control plane as a client does
    "runner": {"envs", "sandbox"},
    "envs": {"sandbox"},  # builds run in the sandbox, as scripts do
    "sandbox": set(),
}


#: the one CLI module that runs the server: inside its command it calls the API's entry point
#: (``rgrid.api.processes.serve``), which binds the port its processes share
CLI_RUNS_THE_SERVER = Path("cli/server.py")


def _module_of(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = ["rgrid", *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path) -> set[str]:
    """Every rgrid module ``path`` imports, relative imports resolved ("rgrid.store.models")."""
    return _imports_of(path.read_text(), _module_of(path), path.name == "__init__.py")


def _imports_of(source: str, module: str, is_package: bool) -> set[str]:
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            # ``from rgrid import store`` / ``from rgrid.store import models`` name modules too
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "rgrid" or name.startswith("rgrid.")}


def _rgrid_imports(path: Path) -> set[str]:
    """The top-level rgrid packages and modules ``path`` imports."""
    return {name.split(".")[1] for name in _imported_modules(path) if "." in name} & _TOP


_TOP = {p.stem if p.is_file() else p.name for p in SRC.iterdir() if p.name != "__pycache__"}


def _layer(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_layers_import_downward_only() -> None:
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        layer = _layer(path)
        if layer in FOUNDATION or layer == "__main__":
            allowed = FOUNDATION | ({"cli"} if layer == "__main__" else set())
        elif layer in ALLOWED:
            allowed = FOUNDATION | ALLOWED[layer] | {layer}
        else:
            problems.append(
                f"{path.relative_to(SRC)}: layer {layer!r} is not known to this test; add it to "
                "FOUNDATION or ALLOWED with what it may import"
            )
            continue
        if path.relative_to(SRC) == CLI_RUNS_THE_SERVER:
            allowed = allowed | {"api"}
        for target in _rgrid_imports(path) - allowed:
            problems.append(f"{path.relative_to(SRC)} imports rgrid.{target}")
    assert problems == []


def test_the_cli_never_imports_the_server_side() -> None:
    for path in (SRC / "cli").rglob("*.py"):
        server_side = {"services", "store", "storage"}
        if path.relative_to(SRC) != CLI_RUNS_THE_SERVER:
            server_side.add("api")
        assert not _rgrid_imports(path) & server_side, path


#: what a route handler may use: the services and the foundation (the wire, its bounds and
#: encodings), nothing that holds state or runs, nor the settings
ROUTE_IMPORTS = (FOUNDATION - {"settings"}) | {"services", "api"}
#: api modules that are not route handlers; only app.py wires the concrete backends
API_PLUMBING = {
    "app.py",
    "convert.py",
    "deps.py",
    "errors.py",
    "bodylimit.py",
    "httpbody.py",
    "allocator.py",
    "processes.py",
    "__init__.py",
}


def test_routes_use_services_only_and_only_the_app_wires_backends() -> None:
    problems = []
    for path in sorted((SRC / "api").rglob("*.py")):
        imports = _rgrid_imports(path)
        if path.parent.name == "routes":
            problems += [f"routes/{path.name} imports rgrid.{t}" for t in imports - ROUTE_IMPORTS]
        elif path.name != "app.py":
            backends = imports & {"store", "storage", "executor", "runner", "sandbox", "envs"}
            problems += [f"api/{path.name} imports rgrid.{t}" for t in sorted(backends)]
    assert problems == []
    assert {p.name for p in (SRC / "api").glob("*.py")} <= API_PLUMBING


#: ORM rows belong to the store: nothing outside it imports its models
ORM_OUTSIDE_STORE: set[str] = set()


def test_store_models_stay_in_the_store() -> None:
    users = {
        f"rgrid/{path.relative_to(SRC).as_posix()}"
        for path in SRC.rglob("*.py")
        if _layer(path) != "store" and "rgrid.store.models" in _imported_modules(path)
    }
    assert users <= ORM_OUTSIDE_STORE, sorted(users - ORM_OUTSIDE_STORE)


def test_relative_imports_are_resolved() -> None:
    """The checks see ``from ..store import models`` as what it is."""
    source = "from ..store import models\nfrom . import cache\nimport json\n"
    assert _imports_of(source, "rgrid.services.probe", is_package=False) == {
        "rgrid.store",
        "rgrid.store.models",
        "rgrid.services",
        "rgrid.services.cache",
    }
