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


ALLOWED = ["pkgs.example.com"]


@pytest.mark.parametrize(
    "line",
    [
        "-e .",
        "--editable ./x",
        "-e git+https://pkgs.example.com/x.git#egg=x",
        "./pkg",
        "../x",
        "/abs/pkg",
        "~/pkg",
        ".",
        "file:///x",
        "FILE:///x",
        "pkg @ file:///x",
        "pkg@file:///x",
        "pkg @ FILE:///x",
        "pkg\t@\tfile:///x",
        "pkg  @   file:/x",
        "pkg @ file://localhost/work/other/evil",
        "pkg @ ./x",
        "pkg @ /abs/x",
        "pkg @ ../x",
        "pkg @ ~/x",
        "evil @ file:///root/.rgrid/local/work/exec_1/evil ; python_version > '3'",
        "pkg-1.0-py3-none-any.whl",
        "pkg-1.0.tar.gz",
        "C:\\pkg",
    ],
)
def test_local_paths_and_editables_are_refused(line: str) -> None:
    with pytest.raises(errors.InvalidRequest, match="local path"):
        check_requirements([line], ALLOWED)
    with pytest.raises(errors.InvalidRequest, match="local path"):
        check_requirements([line], None)  # the CLI refuses them too


@pytest.mark.parametrize(
    "line",
    [
        "pkg @ git+https://pkgs.example.com/x.git",
        "pkg@git+https://pkgs.example.com/x.git",
        "pkg @ GIT+HTTPS://pkgs.example.com/x.git",
        "pkg @ git+ssh://git@pkgs.example.com/x.git",
        "pkg @ hg+https://pkgs.example.com/x",
        "pkg @ http://pkgs.example.com/pkg-1.0-py3-none-any.whl",
        "pkg @ ftp://pkgs.example.com/pkg.tar.gz",
        "pkg @ https://evil.example.org/pkg-1.0-py3-none-any.whl",
        "pkg @ https://pkgs.example.com@evil.example.org/pkg.whl",
        "pkg @ https://pkgs.example.com:443@evil.example.org/pkg.whl",
        "pkg @ https://evil.example.org\\@pkgs.example.com/pkg.whl",
        "pkg @ https://evil.example.org#@pkgs.example.com/pkg.whl",
        "pkg @ https://pkgs%2eexample.com/pkg.whl",
        "pkg @ https://pkgs.example.com%2f@evil.example.org/pkg.whl",
        "pkg @ https://pkgs.example.com.evil.example.org/pkg.whl",
        "pkg @ https://pkgs.example.com./pkg.whl",
        "pkg @ https://[::1]/pkg.whl",
    ],
)
def test_direct_references_other_than_https_to_an_allowed_host_are_refused(line: str) -> None:
    with pytest.raises(
        errors.InvalidRequest, match=r"direct reference|only https|host|does not allow"
    ):
        check_requirements([line], ALLOWED)


@pytest.mark.parametrize(
    "line",
    [
        "https://pkgs.example.com/pkg-1.0-py3-none-any.whl",
        "git+https://pkgs.example.com/x.git",
        "HTTPS://pkgs.example.com/pkg.tar.gz",
    ],
)
def test_bare_urls_are_refused(line: str) -> None:
    with pytest.raises(errors.InvalidRequest, match="bare URL"):
        check_requirements([line], ALLOWED)


def test_an_https_direct_reference_to_an_allowed_host_is_kept() -> None:
    line = "pkg @ https://pkgs.example.com/pkg-1.0-py3-none-any.whl#sha256=abc"
    assert check_requirements([line], ALLOWED) == [
        "pkg @ https://pkgs.example.com/pkg-1.0-py3-none-any.whl#sha256=abc"
    ]
    assert check_requirements(["pkg@https://PKGS.example.com/p.whl"], ALLOWED) == [
        "pkg @ https://PKGS.example.com/p.whl"
    ]
    with pytest.raises(errors.InvalidRequest, match="RGRID_ALLOWED_INDEX_HOSTS"):
        check_requirements([line], [])
    assert check_requirements([line], None) == [check_requirements([line], ALLOWED)[0]]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("requests", "requests"),
        ("Requests [socks] >= 2.0 , < 3", "Requests[socks]<3,>=2.0"),
        ("six\t==\t1.16.0", "six==1.16.0"),
        ('tomli ; python_version < "3.11"', 'tomli; python_version < "3.11"'),
        ("zope.interface>=6", "zope.interface>=6"),
        (
            "six==1.16.0 --hash=sha256:" + "a" * 64,
            "six==1.16.0 --hash=sha256:" + "a" * 64,
        ),
    ],
)
def test_requirements_are_kept_in_the_parsers_spelling(line: str, expected: str) -> None:
    assert check_requirements([line], []) == [expected]


@pytest.mark.parametrize(
    "line",
    [
        "--find-links /wheels",
        "-f /wheels",
        "--find-links=https://pkgs.example.com/wheels",
        "--trusted-host pkgs.example.com",
        "-c constraints.txt",
        "-r other.txt",
        "--requirement other.txt",
        "--no-index",
        "--pre",
        "-iURL",
    ],
)
def test_other_options_are_refused(line: str) -> None:
    with pytest.raises(errors.InvalidRequest, match="not supported"):
        check_requirements([line], ALLOWED)


@pytest.mark.parametrize(
    "line",
    [
        "six --find-links /wheels",
        "six -f /wheels",
        "six --trusted-host x",
        "six --config-settings x=y",
        "six --index-url https://pkgs.example.com/simple",
        "six \\",
        "six==${VERSION}",
        "six @ https://pkgs.example.com/${SECRET}.whl",
        "six; os_name == 'posix' -f /x",
    ],
)
def test_options_inside_lines_continuations_and_expansions_are_refused(line: str) -> None:
    with pytest.raises(errors.InvalidRequest):
        check_requirements([line], ALLOWED)


def test_index_hosts_only_when_allowed() -> None:
    line = "--extra-index-url https://pkgs.example.com/simple"
    with pytest.raises(errors.InvalidRequest, match="RGRID_ALLOWED_INDEX_HOSTS"):
        check_requirements([line], [])
    assert check_requirements([line], ALLOWED) == [line]
    assert check_requirements([line], None) == [line]  # the CLI leaves this to the grid
    assert check_requirements(["-i=https://PKGS.example.com/simple"], ALLOWED) == [
        "-i https://PKGS.example.com/simple"
    ]
    for bad in (
        "--index-url http://pkgs.example.com/simple",
        "--index-url https://pkgs.example.com@evil.example.org/simple",
        "--index-url file:///wheels",
    ):
        with pytest.raises(errors.InvalidRequest, match="plain https"):
            check_requirements([bad], ALLOWED)


def test_huge_files_are_refused() -> None:
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
