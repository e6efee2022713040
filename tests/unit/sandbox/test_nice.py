"""Builds run at lower CPU priority through nice(1), without a preexec_fn (issue 14, item 9)."""

from __future__ import annotations

from rgrid.envs.build import BUILD_NICENESS
from rgrid.sandbox import limits


def test_nice_wraps_argv_only_when_asked() -> None:
    assert limits.nice_argv(0, ["uv", "pip"]) == ["uv", "pip"]
    wrapped = limits.nice_argv(BUILD_NICENESS, ["uv", "pip"])
    assert wrapped[1:] == ["-n", "10", "uv", "pip"]
    assert wrapped[0].endswith("/nice")
