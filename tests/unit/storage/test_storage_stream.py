"""The helpers shared by the storage backends (storage/_stream.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rgrid import digests, errors
from rgrid.storage import Verifier, _stream


async def pieces(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_rechunk_groups_small_chunks() -> None:
    out = [c async for c in _stream.rechunk(pieces(b"ab", b"cd", b"e", b"", b"fghij"), size=4)]
    assert out == [b"abcd", b"efghij"]


async def test_rechunk_passes_a_big_enough_chunk_uncopied() -> None:
    big = bytes(range(256)) * 16
    out = [c async for c in _stream.rechunk(pieces(big, b"x", b"yz"), size=1024)]
    assert out == [big, b"xyz"]
    assert out[0] is big


async def test_rechunk_keeps_the_tail() -> None:
    assert [c async for c in _stream.rechunk(pieces(b"abcde", b"f"), size=4)] == [b"abcde", b"f"]


def test_verifier_reports_the_mismatch() -> None:
    verifier = Verifier("k", digest="blake3:" + "0" * 64, size=None)
    verifier.update(b"data")
    with pytest.raises(errors.IntegrityError) as info:
        verifier.finish()
    assert info.value.details["actual"] == digests.of_bytes(b"data")


def test_verifier_fails_as_soon_as_the_size_is_exceeded() -> None:
    verifier = Verifier("k", digest=None, size=3)
    verifier.update(b"abc")
    with pytest.raises(errors.IntegrityError):
        verifier.update(b"d")


def test_verifier_refuses_negative_size() -> None:
    with pytest.raises(errors.InvalidRequest):
        Verifier("k", digest=None, size=-1)


async def test_iter_file_from_offset(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    chunks = [c async for c in _stream.iter_file(path, label="f", offset=3, chunk_size=4)]
    assert chunks == [b"3456", b"789"]


async def test_iter_file_missing_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound, match="thing not found"):
        [c async for c in _stream.iter_file(tmp_path / "nope", label="thing")]


def test_replace_atomically_cleans_up_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.write_bytes(b"old")

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _stream.replace_atomically(dest, write)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]
    assert dest.read_bytes() == b"old"


def test_wrap_os_errors_keeps_rgrid_errors() -> None:
    with pytest.raises(errors.NotFound), _stream.wrap_os_errors("read"):
        raise errors.NotFound()
    with pytest.raises(errors.StorageError, match="could not read: boom") as info:
        with _stream.wrap_os_errors("read"):
            raise OSError(5, "boom")
    assert isinstance(info.value.__cause__, OSError)
