"""When the runner observes a run's file opens, and when the run is recorded "not observed"."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from rgrid import domain
from rgrid.runner import pipeline

SPEC = domain.ExecutionSpec(
    execution_id="exec_1",
    account_id="acct_1",
    script="main.py",
    args=(),
    env={},
    inputs=(domain.FileRef("main.py", "blake3:" + "a" * 64, 1),),
    timeout_s=10,
    memory_bytes=2**30,
    network=False,
    attempt=1,
)


@dataclasses.dataclass
class _Config:
    read_tracking: bool


@dataclasses.dataclass
class _Box:
    name: str


class _Observer:
    def __init__(self) -> None:
        self.watched: list[Any] = []

    def watch(self, workdir: Path, files: list[tuple[str, Path]], known: Any = None) -> str:
        assert known is None  # no layer here: every input's handle is taken per run
        self.watched.append((workdir, files))
        return "watch"


@pytest.fixture
def observer(monkeypatch: pytest.MonkeyPatch) -> _Observer:
    found = _Observer()
    monkeypatch.setattr(pipeline.reads, "observer", lambda: found)
    return found


def staged(workdir: Path) -> pipeline.Staged:
    return pipeline.Staged({}, workdir, [("main.py", workdir / "main.py")])


async def test_a_bwrap_run_is_watched_with_its_inputs(observer: _Observer, tmp_path: Path) -> None:
    watch = await pipeline._watch(SPEC, staged(tmp_path), _Box("bwrap"), _Config(True))  # type: ignore[arg-type]
    assert watch == "watch"
    assert observer.watched == [(tmp_path, [("main.py", tmp_path / "main.py")])]


async def test_a_run_with_files_outside_its_working_directory_is_not_observed(
    observer: _Observer, tmp_path: Path
) -> None:
    """Those are mounted from a mirror the observer does not watch yet: whole-input rule."""
    outside = dataclasses.replace(
        SPEC, inputs=(*SPEC.inputs, domain.FileRef("/data/x.csv", "blake3:" + "b" * 64, 1))
    )
    assert await pipeline._watch(outside, staged(tmp_path), _Box("bwrap"), _Config(True)) is None  # type: ignore[arg-type]
    assert observer.watched == []


@pytest.mark.parametrize(
    ("box", "tracking"), [("bwrap", False), ("process", True)], ids=["setting-off", "no-mount-ns"]
)
async def test_off_or_a_sandbox_sharing_the_grids_mounts_is_not_observed(
    observer: _Observer, tmp_path: Path, box: str, tracking: bool
) -> None:
    assert await pipeline._watch(SPEC, staged(tmp_path), _Box(box), _Config(tracking)) is None  # type: ignore[arg-type]
    assert observer.watched == []


async def test_without_fanotify_nothing_is_observed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(pipeline.reads, "observer", lambda: None)
    assert await pipeline._watch(SPEC, staged(tmp_path), _Box("bwrap"), _Config(True)) is None  # type: ignore[arg-type]
