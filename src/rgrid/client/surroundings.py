"""The user's time zone and locale, sent with every run so that the script formats dates and
numbers as ``python`` does here (SPEC §4). They are not ``--env`` values: not secret, and
part of the result-cache key."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from rgrid import bounds, schemas

LOCALTIME = Path("/etc/localtime")
TIMEZONE_FILE = Path("/etc/timezone")


def local_zone() -> str | None:
    """The zone of this machine's clock by name ("Europe/Berlin"): where /etc/localtime
    points in the zone database, else /etc/timezone; None when neither says."""
    try:
        target = os.readlink(LOCALTIME)
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        return target.split("zoneinfo/", 1)[1]
    try:
        named = TIMEZONE_FILE.read_text().strip()
    except OSError:
        return None
    return named or None


def detect(environ: Mapping[str, str] | None = None) -> schemas.Surroundings:
    """``$TZ`` (else the local clock's zone) and ``LANG``, ``LANGUAGE``, ``LC_*``; a value the
    grid could not take (blanks, other than ASCII) is left out rather than refused."""
    environ = os.environ if environ is None else environ
    zone = environ.get("TZ")
    if zone is None:
        zone = local_zone()
    locale = {
        name: value
        for name, value in environ.items()
        if bounds.LOCALE_NAME.fullmatch(name) and bounds.surrounding_value_ok(value)
    }
    return schemas.Surroundings(
        time_zone=zone if zone is None or bounds.surrounding_value_ok(zone) else None, locale=locale
    )


def terminal(environ: Mapping[str, str] | None = None) -> schemas.Terminal | None:
    """The terminal this CLI writes the script's output to (its stdout and/or stderr), with
    its size, ``$TERM`` and ``$COLORTERM``; None when neither is a terminal."""
    environ = os.environ if environ is None else environ
    out, err = sys.stdout.isatty(), sys.stderr.isatty()
    if not (out or err):
        return None
    try:
        size = os.get_terminal_size(1 if out else 2)
    except OSError:
        size = os.terminal_size((80, 24))

    def valid(name: str) -> str | None:
        value = environ.get(name)
        return value if value is not None and bounds.surrounding_value_ok(value) else None

    return schemas.Terminal(
        columns=max(0, min(size.columns, 10_000)),
        lines=max(0, min(size.lines, 10_000)),
        stdout=out,
        stderr=err,
        term=valid("TERM"),
        colorterm=valid("COLORTERM"),
    )
