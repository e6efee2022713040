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


def test_round_trip_in_pieces_and_truncation_is_an_integrity_error() -> None:
    data = b"sensor,1.25,ok\n" * 200_000
    packed = compression.compressing_reader(io.BytesIO(data)).read()
    assert len(packed) < len(data) / 10
    whole = compression.Decompressor()
    out = b"".join(whole.feed(packed[i : i + 4096]) for i in range(0, len(packed), 4096))
    whole.finish()
    assert out == data
    with pytest.raises(errors.IntegrityError, match="after the end"):
        whole.feed(b"trailing")
    cut = compression.Decompressor()
    cut.feed(packed[: len(packed) // 2])
    with pytest.raises(errors.IntegrityError, match="truncated"):
        cut.finish()
    sender = compression.Compressor()
    resent = sender.feed(data) + sender.finish()
    back = compression.Decompressor()
    assert back.feed(resent) == data
    back.finish()
