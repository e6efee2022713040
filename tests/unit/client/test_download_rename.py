"""A download takes its name only once every byte is in the file: a CLI killed right after the
rename (a batch's follow, SIGKILLed) must never leave a short file under the output's name."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rgrid import digests, schemas
from rgrid.client import Client
from rgrid.enums import ArtifactKind


@pytest.mark.parametrize("size", [10, 8191, 100_000, 3 * 1024 * 1024 + 5])
def test_the_file_is_whole_when_it_is_renamed(
    size: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    artifact = schemas.ArtifactPublic(
        path="out/result.bin",
        kind=ArtifactKind.OUTPUT,
        digest=digests.of_bytes(data),
        size=len(data),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        expires_at=None,
    )
    seen: list[int] = []
    real_replace = os.replace

    def replace(src: str, dst: Path) -> None:
        seen.append(Path(src).stat().st_size)  # what a SIGKILL at this instant would leave
        real_replace(src, dst)

    monkeypatch.setattr("rgrid.client.os.replace", replace)
    dest = tmp_path / "out" / "result.bin"
    Client("http://127.0.0.1:9", None)._save(
        io.BytesIO(data),  # type: ignore[arg-type]  # reads like an answer's body
        artifact,
        dest,
        compressed=False,
    )
    assert seen == [len(data)]
    assert dest.read_bytes() == data
