"""Compression in transit: which files are worth it, and a stream that must be complete."""

from __future__ import annotations

import io

import pytest

from rgrid import compression, errors

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("name", "size", "expected"),
    [
        ("data.csv", 2 * MiB, True),
        ("noext", 2 * MiB, True),
        ("data.csv", MiB, False),  # at most 1 MiB: not worth a round of zstd
        ("photo.JPG", 50 * MiB, False),
        ("bundle.tar.gz", 50 * MiB, False),
        ("table.parquet", 50 * MiB, False),
        ("archive.zip", 50 * MiB, False),
    ],
)
def test_worth_compressing(name: str, size: int, expected: bool) -> None:
    assert compression.worth_compressing(name, size) is expected


def test_round_trip_in_pieces_with_bounded_output_and_errors() -> None:
    data = b"sensor,1.25,ok\n" * 2_000_000  # 30 MB that compress to almost nothing
    packed = compression.compressing_reader(io.BytesIO(data)).read()
    assert len(packed) < len(data) / 100
    pieces: list[bytes] = []
    whole = compression.Decompressor(pieces.append, len(data))
    for i in range(0, len(packed), 4096):
        whole.feed(packed[i : i + 4096])
    whole.finish()
    assert b"".join(pieces) == data
    assert max(len(p) for p in pieces) <= 256 * 1024  # never the whole expansion at once

    small = compression.Decompressor(lambda _piece: None, len(data) - 1)
    with pytest.raises(errors.IntegrityError, match="more than"):
        small.feed(packed)
    cut = compression.Decompressor(lambda _piece: None, len(data))
    cut.feed(packed[: len(packed) // 2])
    with pytest.raises(errors.IntegrityError, match="truncated"):
        cut.finish()
    garbage = compression.Decompressor(lambda _piece: None, 10)
    with pytest.raises(errors.IntegrityError, match="corrupt"):
        garbage.feed(b"definitely not zstd" * 10)

    sender = compression.Compressor()
    resent = sender.feed(data) + sender.finish()
    back: list[bytes] = []
    again = compression.Decompressor(back.append, len(data))
    again.feed(resent)
    again.finish()
    assert b"".join(back) == data


@pytest.mark.parametrize(
    ("url", "auto"),
    [
        ("http://127.0.0.1:8000", False),
        ("http://127.9.9.9:8000", False),
        ("http://[::1]:8000", False),
        ("http://localhost:8000", False),
        ("https://grid.example.com", True),
        ("http://10.0.0.5:8000", True),
        ("http://[2001:db8::1]:8000", True),
    ],
)
def test_auto_compresses_unless_the_grid_is_on_this_machine(url: str, auto: bool) -> None:
    assert compression.pays_to(url, "auto") is auto
    assert compression.pays_to(url, "always") is True
    assert compression.pays_to(url, "never") is False


def test_the_policy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RGRID_COMPRESSION", raising=False)
    assert compression.policy_from_env() == "auto"
    monkeypatch.setenv("RGRID_COMPRESSION", " Always ")
    assert compression.policy_from_env() == "always"
    monkeypatch.setenv("RGRID_COMPRESSION", "fast")
    with pytest.raises(errors.UsageError, match="must be one of auto, always, never, not 'fast'"):
        compression.policy_from_env()
