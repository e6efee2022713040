"""``download_outputs`` asks the grid only for what it does not know yet: after a live log
stream, whose last page brings the ended execution and its outputs, nothing; with an older
grid, whose last page does not, the execution and its output list."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from rgrid import digests, schemas
from rgrid.client import Client
from rgrid.client.runs import download_outputs
from rgrid.enums import ArtifactKind

DATA = b"result\n"
OUTPUT = schemas.ArtifactPublic(
    path="out/result.txt",
    kind=ArtifactKind.OUTPUT,
    digest=digests.of_bytes(DATA),
    size=len(DATA),
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
    expires_at=None,
)
ENDED = SimpleNamespace(named_outside=[], output_dirs=["out/empty"])


class RecordingGrid:
    """The client calls ``download_outputs`` makes, recorded; a download writes the bytes."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def get(self, execution_id: str) -> Any:
        self.asked.append("get")
        return ENDED

    def artifacts(self, execution_id: str, kind: str | None = None) -> Any:
        self.asked.append("artifacts")
        return SimpleNamespace(data=[OUTPUT])

    def download(
        self, execution_id: str, artifact: schemas.ArtifactPublic, dest: Path, *, target: Path
    ) -> Path:
        self.asked.append(f"download {artifact.path}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(DATA)
        return target


def test_known_execution_and_outputs_need_no_request_but_the_download(tmp_path: Path) -> None:
    grid = RecordingGrid()
    downloads = download_outputs(
        cast(Client, grid),
        "exec_1",
        tmp_path,
        execution=cast(schemas.ExecutionPublic, ENDED),
        outputs=[OUTPUT],
    )
    assert grid.asked == ["download out/result.txt"]
    assert (tmp_path / "out" / "result.txt").read_bytes() == DATA
    assert downloads.dirs == [tmp_path / "out" / "empty"]


def test_an_older_grid_is_asked_for_what_its_last_page_lacks(tmp_path: Path) -> None:
    grid = RecordingGrid()
    downloads = download_outputs(cast(Client, grid), "exec_1", tmp_path)
    assert grid.asked == ["artifacts", "download out/result.txt", "get"]
    assert (tmp_path / "out" / "result.txt").read_bytes() == DATA
    assert downloads.dirs == [tmp_path / "out" / "empty"]
