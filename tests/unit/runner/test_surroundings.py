"""The time zone and locale a script gets: the user's where this worker has them."""

from __future__ import annotations

import pytest

from rgrid.client import surroundings as client_side
from rgrid.runner.surroundings import known_locale, known_zone, script_surroundings


@pytest.mark.parametrize(
    ("zone", "known"),
    [
        ("Europe/Berlin", True),
        (":Europe/Berlin", True),
        ("/usr/share/zoneinfo/Asia/Tokyo", True),
        ("UTC", True),
        ("", True),
        ("EST5EDT", True),
        ("CET-1CEST,M3.5.0,M10.5.0/3", True),
        ("Mars/Olympus", False),
        ("../../etc/passwd", False),
        ("/etc/passwd", False),
        ("/dev/zero", False),
        ("/usr/share/zoneinfo/../../../etc/passwd", False),
        (":nonsense", False),
    ],
)
def test_zones_this_worker_can_give(zone: str, known: bool) -> None:
    assert known_zone(zone) is known


def test_locales_are_matched_as_glibc_does() -> None:
    assert known_locale("C.UTF-8") and known_locale("C.utf8") and known_locale("POSIX")
    assert not known_locale("xx_XX.UTF-8")


def test_unknown_ones_become_utc_and_c_utf8_with_warnings() -> None:
    env, warnings = script_surroundings(
        "Mars/Olympus", {"LANG": "xx_XX.UTF-8", "LANGUAGE": "xx:en", "LC_TIME": "C.UTF-8"}
    )
    assert env == {"TZ": "UTC", "LANG": "C.UTF-8", "LANGUAGE": "xx:en", "LC_TIME": "C.UTF-8"}
    assert len(warnings) == 2 and "Mars/Olympus" in warnings[0] and "xx_XX" in warnings[1]


def test_nothing_given_is_utc_and_c_utf8_and_a_terminal_brings_term() -> None:
    assert script_surroundings(None, {}) == ({"TZ": "UTC", "LANG": "C.UTF-8"}, [])
    env, _ = script_surroundings(None, {}, {"term": "xterm-256color", "colorterm": "truecolor"})
    assert env["TERM"] == "xterm-256color" and env["COLORTERM"] == "truecolor"


def test_the_cli_sends_tz_and_locale_variables_it_can() -> None:
    sent = client_side.detect(
        {
            "TZ": "Europe/Berlin",
            "LANG": "de_DE.UTF-8",
            "LC_TIME": "en_GB.UTF-8",
            "LC_bad": "x",
            "LC_ALL": "not ascii ä",
            "HOME": "/root",
        }
    )
    assert sent.time_zone == "Europe/Berlin"
    assert sent.locale == {"LANG": "de_DE.UTF-8", "LC_TIME": "en_GB.UTF-8"}
    assert client_side.detect({"TZ": "Zürich"}).time_zone is None
