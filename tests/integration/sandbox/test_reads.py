"""The read observer around a real bubblewrap sandbox: reads by Python, by a subprocess and by C
code are seen; files only written, or opened by the grid itself, are told apart."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pytest

from rgrid import domain
from rgrid.runner import layers, mounts
from rgrid.sandbox import SandboxSpec, reads
from rgrid.sandbox.bwrap import SANDBOX_UID, BwrapSandbox

PYTHON = sys._base_executable  # type: ignore[attr-defined]
PREFIX = Path(sys.base_prefix)

SCRIPT = """\
import ctypes, sqlite3, subprocess
open("direct.txt").read()
subprocess.run(["cat", "piped.txt"], check=True, stdout=subprocess.DEVNULL)
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
handle = libc.fopen(b"native.bin", b"r")
libc.fclose(ctypes.c_void_p(handle))
sqlite3.connect("data.db").execute("select count(*) from t").fetchall()
open("rewritten.txt", "w").write("new")
open("appended.txt", "a").write("more")
"""

FILES = ["direct.txt", "piped.txt", "native.bin", "rewritten.txt", "appended.txt", "README"]


@pytest.fixture
def observer() -> reads.ReadObserver:
    if os.geteuid() != 0:
        pytest.skip("fanotify filesystem marks need root")
    found = reads.observer()
    assert found is not None, "fanotify is unavailable although the tests run as root"
    return found


async def test_reads_through_python_a_subprocess_and_c_are_observed(
    tmp_path: Path, observer: reads.ReadObserver
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "script.py").write_text(SCRIPT)
    for name in FILES:
        (workdir / name).write_text(f"{name}\n")
    with sqlite3.connect(workdir / "data.db") as db:
        db.execute("create table t (x)")
    os.chmod(workdir, 0o777)
    for path in workdir.iterdir():
        os.chmod(path, 0o666)
    inputs = [(p.name, p) for p in workdir.iterdir()]
    watch = observer.watch(workdir, inputs)
    (workdir / "README").read_text()  # the grid's own opens are not the script's
    spec = SandboxSpec(
        argv=[PYTHON, "script.py"],
        workdir=workdir,
        env={"PATH": "/usr/bin:/bin"},
        ro_binds=((PREFIX, PREFIX),),
    )
    errors: list[bytes] = []

    async def on_output(stream: str, blocks: list[bytes]) -> None:
        errors.extend(blocks)

    result = await BwrapSandbox().run(spec, on_output)
    assert result.returncode == 0, errors
    seen = watch.finish()

    assert seen is not None
    assert seen.read == ("direct.txt", "native.bin", "piped.txt", "script.py")
    # SQLite opens its database read-write even to query it: "written" is "opened with write
    # access", and the cache never lets such a file differ freely either
    assert seen.written == ("appended.txt", "data.db", "rewritten.txt")


async def test_watches_are_independent(tmp_path: Path, observer: reads.ReadObserver) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for directory in (first, second):
        directory.mkdir()
        (directory / "x.txt").write_text("x\n")
    watch_first = observer.watch(first, [("x.txt", first / "x.txt")])
    watch_second = observer.watch(second, [("x.txt", second / "x.txt")])
    spec = SandboxSpec(
        argv=["/bin/cat", "x.txt"], workdir=second, env={}, ro_binds=((PREFIX, PREFIX),)
    )

    async def ignore(stream: str, blocks: list[bytes]) -> None:
        pass

    assert (await BwrapSandbox().run(spec, ignore)).returncode == 0
    assert watch_second.finish() == domain.InputReads(read=("x.txt",), written=())
    assert watch_first.finish() == domain.InputReads(read=(), written=())


async def test_reads_through_an_overlay_are_seen_on_its_layer(
    tmp_path: Path, observer: reads.ReadObserver
) -> None:
    """The work directory as the runner mounts it for a project tree: the files in a read-only
    layer under an overlay. Opens through the overlay are reported on the layer's own files;
    writes go to the upper directory and leave the layer as it was."""
    lower, upper, scratch, merged = (tmp_path / n for n in ("lower", "upper", "ovl", "merged"))
    for directory in (lower, upper, scratch, merged):
        directory.mkdir()
    (lower / "script.py").write_text(SCRIPT)
    for name in FILES:
        (lower / name).write_text(f"{name}\n")
    with sqlite3.connect(lower / "data.db") as db:
        db.execute("create table t (x)")
    for directory in (lower, upper):
        layers.give(directory, SANDBOX_UID)
    before = {p.name: p.read_bytes() for p in lower.iterdir()}
    overlay = mounts.Overlay(lower, upper, scratch, merged)
    overlay.mount()
    try:
        watch = observer.watch(tmp_path, [(p.name, p) for p in lower.iterdir()])
        (lower / "README").read_text()  # the grid's own opens are not the script's
        spec = SandboxSpec(
            argv=[PYTHON, "script.py"],
            workdir=merged,
            env={"PATH": "/usr/bin:/bin"},
            ro_binds=((PREFIX, PREFIX),),
            workdir_ready=True,
        )
        errors: list[bytes] = []

        async def on_output(stream: str, blocks: list[bytes]) -> None:
            errors.extend(blocks)

        result = await BwrapSandbox().run(spec, on_output)
        assert result.returncode == 0, errors
        seen = watch.finish()
    finally:
        overlay.unmount()
    assert seen is not None
    # a file opened for writing without truncation is copied up by the kernel, which reads
    # it: such a file counts as read (the cache then only misses more, never hits wrongly);
    # one truncated on open is not read at all, as its old bytes cannot matter
    assert seen.read == (
        "appended.txt",
        "data.db",
        "direct.txt",
        "native.bin",
        "piped.txt",
        "script.py",
    )
    assert seen.written == ()
    assert {p.name: p.read_bytes() for p in lower.iterdir()} == before
    assert (upper / "rewritten.txt").read_text() == "new"
    assert (upper / "appended.txt").read_text() == "appended.txt\nmore"
