"""An output whose bytes came inside a batch's page is saved from them, checked as a download
is, without a request; bytes that do not match its address are not saved: it is downloaded."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rgrid import digests, schemas
from rgrid.client import Client
from rgrid.enums import ArtifactKind

DATA = b"rows,7\n" * 40


def artifact(content: str | None) -> schemas.ArtifactPublic:
    return schemas.ArtifactPublic(
        path="out/summary.csv",
        kind=ArtifactKind.OUTPUT,
        digest=digests.of_bytes(DATA),
        size=len(DATA),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        expires_at=None,
        content=content,
    )


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The download requests made; each writes what the grid would have sent."""
    made: list[str] = []

    def download_once(
        self: Client, execution_id: str, artifact: schemas.ArtifactPublic, dest: Path
    ) -> Path:
        made.append(execution_id)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(DATA)
        return dest

    monkeypatch.setattr(Client, "_download_once", download_once)
    return made


def test_inline_bytes_are_saved_without_a_request(tmp_path: Path, requests: list[str]) -> None:
    client = Client("http://127.0.0.1:9", None)
    inline = artifact(base64.b64encode(DATA).decode())
    saved = client.download("exec_1", inline, tmp_path)
    assert saved == tmp_path / "out" / "summary.csv"
    assert saved.read_bytes() == DATA
    assert requests == []
    assert sorted(p.name for p in saved.parent.iterdir()) == ["summary.csv"]  # no .part left


@pytest.mark.parametrize(
    "content",
    [
        base64.b64encode(b"X" + DATA[1:]).decode(),  # damaged on the way
        base64.b64encode(DATA[:-5]).decode(),  # short
        base64.b64encode(DATA + b"more").decode(),  # long
        "not base64 at all!",
    ],
)
def test_inline_bytes_that_do_not_match_are_downloaded_instead(
    content: str, tmp_path: Path, requests: list[str]
) -> None:
    client = Client("http://127.0.0.1:9", None)
    saved = client.download("exec_1", artifact(content), tmp_path)
    assert requests == ["exec_1"]
    assert saved.read_bytes() == DATA
    assert sorted(p.name for p in saved.parent.iterdir()) == ["summary.csv"]
