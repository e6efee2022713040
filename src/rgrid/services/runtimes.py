"""Runtimes (a Python version the workers have, plus an optional preset) and requirement checks."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from rgrid import errors

PRESETS: dict[str, tuple[str, ...]] = {
    "datascience": ("numpy", "pandas", "scipy", "scikit-learn", "matplotlib"),
}
MAX_REQUIREMENTS_BYTES = 1024**2
_RUNTIME = re.compile(r"^(?:(?:python)?(?P<version>3\.\d+))?(?::?(?P<preset>[a-z][a-z0-9-]*))?$")
_INDEX_OPTION = re.compile(r"^(--index-url|--extra-index-url|-i)(?:\s+|=)(?P<url>\S+)$")
_LOCAL_PATH = re.compile(r"^(\.|/|~|file:)|\s@\s*file:")


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


def check_requirements(lines: Sequence[str], allowed_index_hosts: Sequence[str]) -> list[str]:
    """Normalised requirement lines (comments and blanks dropped), or ``InvalidRequest``.

    Refused: local paths and editable installs (the worker has no such path), other pip options,
    index URLs whose host the grid does not allow (``RGRID_ALLOWED_INDEX_HOSTS``), over 1 MB.
    """
    if sum(len(line) + 1 for line in lines) > MAX_REQUIREMENTS_BYTES:
        raise errors.PayloadTooLarge("the requirements are over 1 MB")
    kept: list[str] = []
    for raw in lines:
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.startswith(("-e", "--editable")) or _LOCAL_PATH.search(line):
            raise errors.InvalidRequest(
                f"requirement {line!r} points at a local path or an editable install",
                hint="the worker has no such path: publish the package, or bundle the code "
                "beside the script (sibling modules and packages are sent automatically)",
            )
        index = _INDEX_OPTION.match(line)
        if index is not None:
            host = urlsplit(index.group("url")).hostname or ""
            if host not in allowed_index_hosts:
                raise errors.InvalidRequest(
                    f"index host {host!r} is not allowed on this grid",
                    hint="the grid's operator can allow it in RGRID_ALLOWED_INDEX_HOSTS",
                )
        elif line.startswith("-"):
            raise errors.InvalidRequest(f"requirement option {line.split()[0]!r} is not supported")
        kept.append(line)
    return kept


def merged_requirements(lines: Sequence[str], runtime: Runtime) -> list[str]:
    """The lines plus the preset's packages (those not already named)."""
    preset = PRESETS.get(runtime.preset or "", ())
    named = {_name(line) for line in lines}
    return [*lines, *(p for p in preset if _name(p) not in named)]


def _name(line: str) -> str:
    return re.split(r"[<>=!~;\[ @]", line, maxsplit=1)[0].strip().lower().replace("_", "-")
