"""Safe relative paths (zip-slip) and the error envelope round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from rgrid import errors
from rgrid.paths import join_under, safe_relpath


@pytest.mark.parametrize("good", ["a", "a/b.txt", "./a/b", "a/./b", "a//b", "dir.with.dots/x"])
def test_safe_paths(good: str) -> None:
    assert ".." not in safe_relpath(good).parts


@pytest.mark.parametrize("name", ["a\\..\\b", "line\nbreak", "tab\there", "x" * 255])
def test_legal_posix_names_stay_one_name_under_the_root(name: str, tmp_path: Path) -> None:
    """A backslash or a newline is an ordinary character of a POSIX name (issue 13, 12)."""
    assert join_under(tmp_path, name) == tmp_path / name


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x", "a/../../x", "a/..", "a\x00b", "."])
def test_unsafe_paths_are_refused(bad: str, tmp_path: Path) -> None:
    with pytest.raises(errors.UnsafePath):
        join_under(tmp_path, bad)


@pytest.mark.parametrize(
    "cls", [errors.NotFound, errors.AmbiguousId, errors.IntegrityError, errors.Unauthorized]
)
def test_error_body_round_trip(cls: type[errors.RgridError]) -> None:
    original = cls("what happened", hint="what to do", details={"k": 1})
    rebuilt = errors.from_body(cls.status, original.to_body())
    assert type(rebuilt) is cls
    assert (rebuilt.message, rebuilt.hint, rebuilt.details) == (
        "what happened",
        "what to do",
        {"k": 1},
    )


def test_unknown_bodies_still_give_an_rgrid_error() -> None:
    assert isinstance(errors.from_body(502, None), errors.RgridError)
    assert errors.from_body(500, {"error": {"code": "NEW_CODE", "message": "m"}}).message == "m"
