"""Requirement line rules and runtime names."""

from __future__ import annotations

import pytest

from rgrid import errors
from rgrid.envs.requirements import check_requirements
from rgrid.services.runtimes import Runtime, merged_requirements, parse_runtime


def test_comments_and_blanks_are_dropped() -> None:
    assert check_requirements(["# c", "", "requests>=2  # why", "  six "], []) == [
        "requests>=2",
        "six",
    ]


@pytest.mark.parametrize(
    "line", ["-e .", "--editable ./x", "./pkg", "/abs/pkg", "~/pkg", "file:///x", "pkg @ file:///x"]
)
def test_local_and_editable_lines_are_refused(line: str) -> None:
    with pytest.raises(errors.InvalidRequest, match="local path or an editable"):
        check_requirements([line], [])


def test_index_hosts_only_when_allowed() -> None:
    line = "--extra-index-url https://pkgs.example.com/simple"
    with pytest.raises(errors.InvalidRequest, match="RGRID_ALLOWED_INDEX_HOSTS"):
        check_requirements([line], [])
    assert check_requirements([line], ["pkgs.example.com"]) == [line]
    assert check_requirements([line], None) == [line]  # the CLI leaves this to the grid


def test_other_options_and_huge_files_are_refused() -> None:
    with pytest.raises(errors.InvalidRequest, match="--find-links"):
        check_requirements(["--find-links /wheels"], [])
    with pytest.raises(errors.PayloadTooLarge):
        check_requirements(["x" * 1024] * 1025, [])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, Runtime("3.11", None)),
        ("python3.12", Runtime("3.12", None)),
        ("3.12", Runtime("3.12", None)),
        ("python3.11:datascience", Runtime("3.11", "datascience")),
        ("datascience", Runtime("3.11", "datascience")),
    ],
)
def test_runtime_names(value: str | None, expected: Runtime) -> None:
    assert parse_runtime(value, ["3.11", "3.12"], "3.11") == expected


@pytest.mark.parametrize("value", ["python2.7", "python3.9", "python3.11:gpu", "py!"])
def test_bad_runtimes_name_what_is_available(value: str) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        parse_runtime(value, ["3.11", "3.12"], "3.11")
    text = caught.value.message + (caught.value.hint or "")
    assert "python3.11" in text or "datascience" in text


def test_presets_merge_without_duplicates() -> None:
    merged = merged_requirements(["pandas==2.2.0", "requests"], Runtime("3.11", "datascience"))
    assert merged == ["pandas==2.2.0", "requests", "numpy", "scipy", "scikit-learn", "matplotlib"]
