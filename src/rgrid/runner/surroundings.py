"""The time zone and locale a script runs in: the user's, where this worker has them.

An unknown zone or locale is never a failure: the script runs in UTC or C.UTF-8 and its log
says so, as a warning line of rgrid's own."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_ZONE = "UTC"
DEFAULT_LOCALE = "C.UTF-8"
#: a POSIX TZ rule without a file ("CET-1CEST,M3.5.0,M10.5.0/3", "EST5EDT", "UTC0")
POSIX_TZ = re.compile(r"<?[A-Za-z+\-0-9]{3,}>?[+-]?\d{1,2}(:\d{2}){0,2}(<?[A-Za-z+\-0-9]{3,}>?.*)?")
ALWAYS_THERE = frozenset({"c", "posix", "c.utf8"})


def zoneinfo_dir() -> Path:
    """Where glibc in the sandbox looks (the script gets no ``TZDIR``)."""
    return Path("/usr/share/zoneinfo")


def known_zone(zone: str) -> bool:
    """Whether this worker can give a script ``zone``: a file of its zone database (by name,
    or by a path inside it, as glibc reads ``TZ``), or a POSIX rule that needs none. A user's
    zone never makes the grid read a file outside its zone database."""
    name = zone.removeprefix(":")
    if not name:
        return True  # TZ="" is UTC to glibc
    base = zoneinfo_dir().resolve()
    path = (Path(name) if name.startswith("/") else base / name).resolve()
    if path.is_relative_to(base) and path.is_file():
        with path.open("rb") as data:
            return data.read(4) == b"TZif"
    return not zone.startswith((":", "/")) and POSIX_TZ.fullmatch(zone) is not None


def _normal(locale_name: str) -> str:
    """``de_DE.UTF-8`` and ``de_DE.utf8`` are the same locale to glibc."""
    return locale_name.lower().replace("utf-8", "utf8")


@functools.cache
def installed_locales() -> frozenset[str]:
    """The locales of this worker (``locale -a``), normalised."""
    tool = shutil.which("locale")
    if tool is None:
        return ALWAYS_THERE
    listed = subprocess.run([tool, "-a"], capture_output=True, text=True, check=False).stdout
    return ALWAYS_THERE | {_normal(line.strip()) for line in listed.splitlines() if line.strip()}


def known_locale(value: str) -> bool:
    return not value or _normal(value) in installed_locales()


def script_surroundings(
    time_zone: str | None,
    locale: Mapping[str, str],
    terminal: Mapping[str, Any] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """The variables a script gets for the user's time zone, locale and terminal, and a
    warning for each this worker cannot give (replaced by UTC or C.UTF-8)."""
    warnings = []
    env = {"TZ": DEFAULT_ZONE if time_zone is None else time_zone}
    for name, key in (("TERM", "term"), ("COLORTERM", "colorterm")):
        if terminal and terminal.get(key):
            env[name] = str(terminal[key])
    if not known_zone(env["TZ"]):
        warnings.append(f"warning: unknown time zone {time_zone!r} here; the script runs in UTC")
        env["TZ"] = DEFAULT_ZONE
    for name, value in sorted(locale.items()):
        if name != "LANGUAGE" and not known_locale(value):
            warnings.append(
                f"warning: the locale {value!r} ({name}) is not installed here; "
                f"the script runs with {DEFAULT_LOCALE}"
            )
            value = DEFAULT_LOCALE
        env[name] = value
    if "LANG" not in env and "LC_ALL" not in env:
        env["LANG"] = DEFAULT_LOCALE
    return env, warnings
