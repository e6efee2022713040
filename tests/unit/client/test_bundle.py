"""What `rgrid run` decides to send: siblings, packages, file arguments, _inputs placement."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rgrid import errors
from rgrid.client.bundle import build_bundle, local_modules


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_sibling_modules_and_packages_are_found_recursively(tmp_path: Path) -> None:
    script = write(tmp_path / "main.py", "import helpers\nfrom pkg import thing\nimport json, os\n")
    write(tmp_path / "helpers.py", "import deeper\n")
    write(tmp_path / "deeper.py", "")
    write(tmp_path / "pkg" / "__init__.py", "from .inner import thing\n")
    write(tmp_path / "pkg" / "inner.py", "thing = 1\n")
    write(tmp_path / "pkg" / "data.txt", "package data travels too\n")
    write(tmp_path / "unrelated.py", "")
    found = {p.relative_to(tmp_path).as_posix() for p in local_modules(script)}
    assert found == {"helpers.py", "deeper.py", "pkg/__init__.py", "pkg/inner.py", "pkg/data.txt"}


def test_a_script_with_a_syntax_error_is_still_sent(tmp_path: Path) -> None:
    script = write(tmp_path / "bad.py", "def broken(:\n")
    assert local_modules(script) == []


def test_arguments_stay_as_typed_and_outside_paths_keep_their_absolute_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    write(project / "s.py", "print(1)\n")
    write(project / "data" / "in.csv", "a\n")
    write(elsewhere / "far.csv", "b\n")
    write(elsewhere / "tree" / "x.txt", "x\n")
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(project)
    args = [
        "data/in.csv",
        str(elsewhere / "far.csv"),
        "../elsewhere/tree/",
        "--in=data/in.csv",
        "7",
        "--save=../out/result.txt",
    ]
    bundle = build_bundle(Path("s.py"), args, [], argv0="./s.py")
    assert bundle.script == "s.py" and bundle.argv0 == "./s.py"
    assert bundle.args == args
    assert bundle.cwd == str(project)
    assert sorted(f.rel for f in bundle.files) == [
        str(elsewhere / "far.csv"),
        str(elsewhere / "tree" / "x.txt"),
        "data/in.csv",
        "s.py",
    ]
    # the directory of a named file, a named directory, the directory of an output target
    assert bundle.mount_roots == [str(elsewhere), str(tmp_path / "out")]
    assert bundle.named_outside == [
        str(elsewhere / "far.csv"),
        str(elsewhere / "tree"),
        str(tmp_path / "out" / "result.txt"),
    ]


def test_a_path_that_would_cover_the_system_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "s.py", "")
    monkeypatch.chdir(tmp_path)
    for named in ("/etc/hostname", "/usr/bin", "/proc/self/status"):
        with pytest.raises(errors.UsageError, match="would cover the sandbox's"):
            build_bundle(Path("s.py"), [named], [])


def test_each_content_is_hashed_once_per_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "s.py", "")
    write(tmp_path / "d.csv", "same")
    monkeypatch.chdir(tmp_path)
    bundle = build_bundle(Path("s.py"), ["d.csv", "d.csv"], [])
    assert [f.rel for f in bundle.files] == ["s.py", "d.csv"]


def test_unusable_paths_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(errors.UsageError, match="script not found"):
        build_bundle(Path("missing.py"), [], [])
    write(tmp_path / "s.py", "")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(errors.UsageError, match="not a regular file"):
        build_bundle(Path("s.py"), ["pipe"], [])
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    with pytest.raises(errors.UsageError, match="broken symlink"):
        build_bundle(Path("s.py"), ["dangling"], [])
    with pytest.raises(errors.UsageError, match="--include"):
        build_bundle(Path("s.py"), [], [Path("nope.txt")])
