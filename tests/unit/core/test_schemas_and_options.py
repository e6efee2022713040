"""Wire conversion on the client side and CLI option parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import click
import pytest

from rgrid import schemas
from rgrid.cli.options import Duration, Size, key_values
from rgrid.domain import ExecutionState, Stream


def test_load_dump_round_trip_ignores_unknown_fields() -> None:
    page = schemas.LogsPublic(
        data=[
            schemas.LogLinePublic(
                seq=1,
                attempt=1,
                stream=Stream.STDERR,
                ts=datetime(2026, 1, 2, tzinfo=UTC),
                text="x\n",
            )
        ],
        last_seq=1,
        state=ExecutionState.RUNNING,
        exit_code=None,
        done=False,
    )
    wire = schemas.dump(page)
    assert wire["data"][0]["stream"] == "stderr" and wire["state"] == "running"
    assert schemas.dump(schemas.load(schemas.LogsPublic, {**wire, "added_later": 1})) == wire


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("2s", 2), ("5m", 300), ("1.5h", 5400), ("1d", 86400)]
)
def test_durations(text: str, seconds: float) -> None:
    assert Duration().convert(text, None, None) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [("512MiB", 512 * 1024**2), ("2GiB", 2 * 1024**3), ("1G", 10**9), ("100", 100)],
)
def test_sizes(text: str, size: int) -> None:
    assert Size().convert(text, None, None) == size


@pytest.mark.parametrize("bad", ["", "soon", "-1s", "0"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(click.BadParameter):
        Duration().convert(bad, None, None)


def test_key_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_SHELL", "yes")
    assert key_values(("A=1", "B=x=y", "FROM_SHELL"), "--env", local_fallback=True) == {
        "A": "1",
        "B": "x=y",
        "FROM_SHELL": "yes",
    }
    with pytest.raises(click.BadParameter):
        key_values(("NOPE",), "--metadata")
    with pytest.raises(click.BadParameter):
        key_values(("=v",), "--metadata")
