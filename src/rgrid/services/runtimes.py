"""Runtimes (a Python version the workers have, plus an optional preset) and requirement checks."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from rgrid import errors

PRESETS: dict[str, tuple[str, ...]] = {
    "datascience": ("numpy", "pandas", "scipy", "scikit-learn", "matplotlib"),
}
_RUNTIME = re.compile(r"^(?:(?:python)?(?P<version>\d+\.\d+))?(?::?(?P<preset>[a-z][a-z0-9-]*))?$")


@dataclasses.dataclass(frozen=True)
class Runtime:
    python: str  # minor version, e.g. "3.11"
    preset: str | None


def parse_runtime(value: str | None, available: Sequence[str], default: str) -> Runtime:
    """``python3.11``, ``3.11``, ``python3.11:datascience`` or ``datascience``.

    Raises ``InvalidRequest`` naming the available Pythons or presets.
    """
    if not value:
        return Runtime(default, None)
    match = _RUNTIME.match(value.strip().lower())
    if match is None or not (match.group("version") or match.group("preset")):
        raise errors.InvalidRequest(
            f"invalid runtime {value!r}",
            hint=f"use python3.X[:preset], e.g. python{default}:datascience",
        )
    version, preset = match.group("version") or default, match.group("preset")
    if version not in available:
        names = ", ".join(f"python{v}" for v in available)
        raise errors.InvalidRequest(
            f"runtime python{version} is not available on this grid; available: {names}",
            details={"available": [f"python{v}" for v in available]},
        )
    if preset is not None and preset not in PRESETS:
        raise errors.InvalidRequest(
            f"unknown preset {preset!r}; presets: {', '.join(sorted(PRESETS))}"
        )
    return Runtime(version, preset)


def merged_requirements(lines: Sequence[str], runtime: Runtime) -> list[str]:
    """The lines plus the preset's packages (those not already named)."""
    preset = PRESETS.get(runtime.preset or "", ())
    named = {_name(line) for line in lines}
    return [*lines, *(p for p in preset if _name(p) not in named)]


def _name(line: str) -> str:
    return re.split(r"[<>=!~;\[ @]", line, maxsplit=1)[0].strip().lower().replace("_", "-")


def resolve_requirements(
    lines: Sequence[str],
    runtime_name: str | None,
    grid_pythons: Sequence[str],
    default: str,
    allowed_index_hosts: Sequence[str],
) -> tuple[Runtime, list[str]]:
    """The runtime a submission asks for and its checked requirement lines, preset merged in."""
    from rgrid.envs.requirements import check_requirements

    runtime = parse_runtime(runtime_name, grid_pythons, default)
    return runtime, merged_requirements(check_requirements(lines, allowed_index_hosts), runtime)
