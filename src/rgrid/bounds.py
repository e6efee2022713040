"""What one request may carry (SPEC §14): the limits, and the checks both sides share.

The grid enforces every limit; the CLI runs the same checks before it uploads anything, so a
refused ``--env`` or ``--metadata`` costs no transfer. docs/api-limits.md lists the values.
Imports nothing of rgrid but ``errors``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import NoReturn

from rgrid import errors

#: the largest values of the store's integer columns (PostgreSQL INTEGER and BIGINT)
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

#: JSON request bodies (blob uploads stream and are not bounded by this); RGRID_MAX_BODY_BYTES
MAX_BODY_BYTES = 16 * 1024**2

MAX_METADATA_ENTRIES = 64
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 1024
#: ``metadata=K=V`` filters on one listing
MAX_METADATA_FILTERS = 16

MAX_ENV_ENTRIES = 256
MAX_ENV_NAME_CHARS = 256
#: one value, and all names and values together, in UTF-8 bytes (Linux refuses one
#: environment string over 128 KiB at exec; a start-up failure would be retried for nothing)
MAX_ENV_VALUE_BYTES = 32 * 1024
MAX_ENV_TOTAL_BYTES = 256 * 1024

#: account and key names
MAX_NAME_CHARS = 200

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# C0 controls (ESC starts every ANSI sequence), DEL and the C1 controls
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character (C0, DEL or C1)."""
    return _CONTROL.search(text) is not None


def _refuse(message: str, limit: str, value: int | None = None) -> NoReturn:
    details: dict[str, object] = {"limit": limit}
    if value is not None:
        details["value"] = value
    raise errors.InvalidRequest(message, details=details)


def check_name(name: str, what: str) -> None:
    """A name shown in listings (an account's, a key's): at most ``MAX_NAME_CHARS`` characters
    and no control characters, which would reach a terminal raw."""
    if len(name) > MAX_NAME_CHARS:
        _refuse(f"{what} names are at most {MAX_NAME_CHARS} characters", "MAX_NAME_CHARS")
    if has_control(name):
        _refuse(f"{what} names cannot contain control characters", "NO_CONTROL_CHARACTERS")


def check_metadata(metadata: Mapping[str, str]) -> None:
    """Labels of an execution: at most ``MAX_METADATA_ENTRIES``, keys of 1 to
    ``MAX_METADATA_KEY_CHARS`` characters without control characters, values of at most
    ``MAX_METADATA_VALUE_CHARS`` characters without NUL."""
    if len(metadata) > MAX_METADATA_ENTRIES:
        _refuse(
            f"at most {MAX_METADATA_ENTRIES} metadata entries, not {len(metadata)}",
            "MAX_METADATA_ENTRIES",
            len(metadata),
        )
    for key, value in metadata.items():
        if not 0 < len(key) <= MAX_METADATA_KEY_CHARS or has_control(key):
            _refuse(
                f"metadata keys are 1-{MAX_METADATA_KEY_CHARS} characters without control "
                f"characters: {key[:40]!r}",
                "MAX_METADATA_KEY_CHARS",
            )
        if len(value) > MAX_METADATA_VALUE_CHARS or "\x00" in value:
            _refuse(
                f"metadata values are at most {MAX_METADATA_VALUE_CHARS} characters without "
                f"NUL (key {key!r})",
                "MAX_METADATA_VALUE_CHARS",
            )


def check_env(env: Mapping[str, str]) -> None:
    """``--env`` variables: names like shell identifiers (so no ``=`` nor NUL) of at most
    ``MAX_ENV_NAME_CHARS``, values without NUL of at most ``MAX_ENV_VALUE_BYTES``, at most
    ``MAX_ENV_ENTRIES`` of them and ``MAX_ENV_TOTAL_BYTES`` in all."""
    if len(env) > MAX_ENV_ENTRIES:
        _refuse(
            f"at most {MAX_ENV_ENTRIES} environment variables, not {len(env)}",
            "MAX_ENV_ENTRIES",
            len(env),
        )
    total = 0
    for name, value in env.items():
        if not ENV_NAME.fullmatch(name) or len(name) > MAX_ENV_NAME_CHARS:
            _refuse(
                f"invalid environment variable name {name[:40]!r}: letters, digits and _, "
                f"not starting with a digit, at most {MAX_ENV_NAME_CHARS} characters",
                "ENV_NAME",
            )
        if "\x00" in value:
            _refuse(f"the value of {name} contains a NUL byte", "ENV_NO_NUL")
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_ENV_VALUE_BYTES:
            _refuse(
                f"the value of {name} is {size} bytes; at most {MAX_ENV_VALUE_BYTES}",
                "MAX_ENV_VALUE_BYTES",
                size,
            )
        total += len(name) + 1 + size
    if total > MAX_ENV_TOTAL_BYTES:
        _refuse(
            f"the environment variables are {total} bytes in all; at most {MAX_ENV_TOTAL_BYTES}",
            "MAX_ENV_TOTAL_BYTES",
            total,
        )


def utc_time(value: datetime | None, name: str) -> datetime | None:
    """A time given by a client, in UTC. A time without a timezone is refused: whose local
    time it meant cannot be known (the CLI sends its local times with their offset)."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise errors.InvalidRequest(f"{name} needs a timezone (e.g. 2026-01-01T00:00:00+00:00)")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise errors.InvalidRequest(f"{name} is out of range") from exc


#: the variables a run's surroundings may carry besides the time zone (SPEC §4)
LOCALE_NAME = re.compile(r"LANG|LANGUAGE|LC_[A-Z]+")
MAX_LOCALE_ENTRIES = 16
MAX_SURROUNDING_CHARS = 200
_SURROUNDING_VALUE = re.compile(r"[\x21-\x7e]*")  # printable ASCII without blanks


def surrounding_value_ok(value: str) -> bool:
    """Whether the grid takes ``value`` as a time zone, locale or terminal variable (the CLI
    leaves out what it would refuse)."""
    return len(value) <= MAX_SURROUNDING_CHARS and _SURROUNDING_VALUE.fullmatch(value) is not None


def check_surroundings(
    time_zone: str | None, locale: Mapping[str, str], others: Mapping[str, str | None] = {}
) -> None:
    """A run's time zone, locale variables (names LANG, LANGUAGE or LC_*, at most
    ``MAX_LOCALE_ENTRIES``) and ``others`` by name (TERM …): values of printable ASCII, at
    most ``MAX_SURROUNDING_CHARS``."""
    if len(locale) > MAX_LOCALE_ENTRIES:
        _refuse(
            f"at most {MAX_LOCALE_ENTRIES} locale variables, not {len(locale)}",
            "MAX_LOCALE_ENTRIES",
            len(locale),
        )
    for name in locale:
        if not LOCALE_NAME.fullmatch(name):
            _refuse(f"{name[:40]!r} is not a locale variable (LANG, LANGUAGE, LC_*)", "LOCALE_NAME")
    for name, value in {"TZ": time_zone, **locale, **others}.items():
        if not surrounding_value_ok(value or ""):
            _refuse(
                f"{name} must be printable ASCII of at most {MAX_SURROUNDING_CHARS} characters",
                "MAX_SURROUNDING_CHARS",
            )
