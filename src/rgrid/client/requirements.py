"""Which packages a script needs (SPEC §7), decided on the user's machine before upload.

In order: ``--requirements FILE``; a PEP 723 ``# /// script`` block; ``requirements.txt`` beside
the script; else inferred from the imports of the script and the local modules sent with it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from rgrid import errors
from rgrid.envs.distributions import infer_requirements

MAX_REQUIREMENTS_BYTES = 1024**2
# PEP 723's reference regular expression
_PEP723 = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")
_OPTIONAL_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception"})


class DependencyPlan(NamedTuple):
    source: str  # shown to the user: where the requirements came from
    requirements: list[str]


def _read_requirements(path: Path) -> list[str]:
    try:
        if path.stat().st_size > MAX_REQUIREMENTS_BYTES:
            raise errors.UsageError(
                f"{path} is over 1 MB", hint="is it really a requirements file?"
            )
        text = path.read_text()
    except OSError as exc:
        raise errors.UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return [line.strip() for line in text.splitlines()]


def pep723_dependencies(script_text: str) -> list[str] | None:
    """The ``dependencies`` of the script's PEP 723 block, or None when it has none."""
    blocks = [m for m in _PEP723.finditer(script_text) if m.group("type") == "script"]
    if not blocks:
        return None
    if len(blocks) > 1:
        raise errors.UsageError("the script has several `# /// script` blocks (PEP 723 allows one)")
    import tomllib

    content = "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in blocks[0].group("content").splitlines(keepends=True)
    )
    try:
        data = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        raise errors.UsageError(f"the PEP 723 block is not valid TOML: {exc}") from exc
    dependencies = data.get("dependencies", [])
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise errors.UsageError("PEP 723 `dependencies` must be a list of strings")
    return dependencies


def _is_optional(handlers: list[ast.ExceptHandler]) -> bool:
    names = {h.type.id for h in handlers if isinstance(h.type, ast.Name)}
    return any(h.type is None for h in handlers) or bool(names & _OPTIONAL_IMPORT_ERRORS)


def _required_imports(tree: ast.AST) -> set[str]:
    """Absolute top-level imports, leaving out those guarded by ``try/except ImportError``
    and ``if TYPE_CHECKING`` (the script runs without them)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        children: list[ast.AST]
        if isinstance(node, ast.Try) and _is_optional(node.handlers):
            children = [*node.handlers, *node.orelse, *node.finalbody]
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            children = list(node.orelse)
        else:
            children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        for child in children:
            visit(child)

    visit(tree)
    return found


def inferred(sources: Iterable[Path], local_names: set[str]) -> list[str]:
    imported: set[str] = set()
    for path in sources:
        if path.suffix != ".py":
            continue
        try:
            imported |= _required_imports(ast.parse(path.read_bytes()))
        except (SyntaxError, ValueError, OSError):
            continue  # the grid reports a syntax error as the script's own
    return infer_requirements(imported, local_names)


def plan(script: Path, requirements_file: Path | None, modules: list[Path]) -> DependencyPlan:
    """Decide the requirements of ``script`` (its bundled local ``modules`` given).

    Lines the worker could never install (local paths, editable installs) are refused here,
    before anything is uploaded; the grid checks index hosts.
    """
    decided = _decide(script, requirements_file, modules)
    if decided.requirements:  # imported only then: the rules' module compiles its patterns
        from rgrid.envs.requirements import check_requirements

        check_requirements(decided.requirements, None)
    return decided


def _decide(script: Path, requirements_file: Path | None, modules: list[Path]) -> DependencyPlan:
    if requirements_file is not None:
        return DependencyPlan(
            f"--requirements {requirements_file}", _read_requirements(requirements_file)
        )
    header = pep723_dependencies(script.read_text(errors="replace"))
    if header is not None:
        return DependencyPlan("PEP 723 header", header)
    beside = script.parent / "requirements.txt"
    if beside.is_file():
        return DependencyPlan("requirements.txt", _read_requirements(beside))
    local = {p.stem if p.suffix == ".py" else p.name for p in modules}
    local |= {
        p.relative_to(script.parent).parts[0] for p in modules if p.is_relative_to(script.parent)
    }
    local.add(script.stem)
    names = inferred([script, *modules], local)
    return DependencyPlan("inferred from imports" if names else "none", names)
