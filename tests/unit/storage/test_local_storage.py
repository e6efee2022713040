"""LocalStorage specifics the contract suite cannot see: on-disk layout, sidecars, error mapping."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rgrid import digests, errors
from rgrid.storage import BlobInfo
from rgrid.storage.local import LocalStorage


async def one(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "root")


def sha(data: bytes) -> str:
    return digests.of_bytes(data)


async def test_layout_on_disk(storage: LocalStorage) -> None:
    await storage.put("a/b/c.bin", one(b"hello"))
    assert (storage.root / "a/b/c.bin").read_bytes() == b"hello"
    meta = json.loads((storage.root / ".meta/a/b/c.bin.json").read_text())
    assert meta["digest"] == sha(b"hello")
    assert list((storage.root / ".tmp").iterdir()) == []


async def test_stat_uses_the_sidecar(storage: LocalStorage) -> None:
    await storage.put("k", one(b"hello"))
    meta = storage.root / ".meta/k.json"
    record = json.loads(meta.read_text())
    meta.write_text(
        json.dumps({**record, "digest": "blake3:" + "f" * 64})
    )  # planted: proves it is read
    assert await storage.stat("k") == BlobInfo("k", 5, "blake3:" + "f" * 64)


async def test_a_sidecar_written_before_blake3_reads_as_a_sha256_address(
    storage: LocalStorage,
) -> None:
    await storage.put("k", one(b"hello"))
    meta = storage.root / ".meta/k.json"
    record = json.loads(meta.read_text())
    del record["digest"]
    old = hashlib.sha256(b"hello").hexdigest()
    meta.write_text(json.dumps({**record, "sha256": old}))  # as the grid wrote it then
    assert await storage.stat("k", algorithm="sha256") == BlobInfo("k", 5, f"sha256:{old}")
    # asked for another algorithm's address: hashed again, and the record is left as it was
    assert await storage.stat("k") == BlobInfo("k", 5, digests.of_bytes(b"hello"))
    assert json.loads(meta.read_text())["sha256"] == old


async def test_a_lost_sidecar_is_rebuilt_with_the_algorithm_asked_for(
    storage: LocalStorage,
) -> None:
    await storage.put("k", one(b"hello"), digest=digests.of_bytes(b"hello", "sha256"))
    (storage.root / ".meta/k.json").unlink()
    info = await storage.stat("k", algorithm="sha256")
    assert info == BlobInfo("k", 5, digests.of_bytes(b"hello", "sha256"))


@pytest.mark.parametrize("damage", ["delete", "garbage", "stale"])
async def test_stat_rehashes_without_a_valid_sidecar(storage: LocalStorage, damage: str) -> None:
    await storage.put("k", one(b"hello"))
    meta = storage.root / ".meta/k.json"
    if damage == "delete":
        meta.unlink()
    elif damage == "garbage":
        meta.write_text("{not json")
    else:  # the blob was replaced behind the sidecar's back
        (storage.root / "k").write_bytes(b"HELLO!")
    expected = await storage.stat("k")
    data = (storage.root / "k").read_bytes()
    assert expected == BlobInfo("k", len(data), sha(data))
    assert json.loads(meta.read_text())["digest"] == sha(data)  # healed


async def test_stat_of_a_directory_is_none(storage: LocalStorage) -> None:
    await storage.put("dir/file", one(b"x"))
    assert await storage.stat("dir") is None
    with pytest.raises(errors.NotFound):
        [chunk async for chunk in storage.open("dir")]
    await storage.delete("dir")
    assert await storage.stat("dir/file") is not None


async def test_delete_removes_the_sidecar(storage: LocalStorage) -> None:
    await storage.put("k", one(b"x"))
    await storage.delete("k")
    assert not (storage.root / ".meta/k.json").exists()


async def test_os_errors_become_storage_errors(tmp_path: Path) -> None:
    root = tmp_path / "not-a-dir"
    root.write_bytes(b"")
    storage = LocalStorage(root)
    with pytest.raises(errors.StorageError) as info:
        await storage.health()
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(errors.StorageError):
        await storage.put("k", one(b"x"))
    assert str(tmp_path) not in info.value.message  # server paths stay out of client messages


async def test_key_clashing_with_a_file_is_a_storage_error(storage: LocalStorage) -> None:
    await storage.put("a", one(b"x"))
    with pytest.raises(errors.StorageError):
        await storage.put("a/b", one(b"y"))
    files = sorted(str(p.relative_to(storage.root)) for p in storage.root.rglob("*") if p.is_file())
    assert files == [".meta/a.json", "a"]


async def test_copy_into_missing_directory_is_a_storage_error(
    storage: LocalStorage, tmp_path: Path
) -> None:
    await storage.put("k", one(b"x"))
    with pytest.raises(errors.StorageError):
        await storage.copy_to_file("k", tmp_path / "missing" / "out")


async def test_health_creates_the_root(storage: LocalStorage) -> None:
    await storage.health()
    assert storage.root.is_dir()
    assert list((storage.root / ".tmp").iterdir()) == []


def test_writeback_is_only_a_hint(tmp_path: Path) -> None:
    from rgrid.storage import writeback

    if sys.platform.startswith("linux"):
        assert writeback._sync_file_range() is not None  # found in libc
    path = tmp_path / "f.bin"
    with path.open("wb") as handle:
        handle.write(b"x" * 100_000)
        handle.flush()
        writeback.start(handle.fileno(), 0)
        writeback.start(handle.fileno(), 10**9)  # past the end: nothing to do, no error
    writeback.start(10**6, 0)  # not a file descriptor: ignored
    assert path.read_bytes() == b"x" * 100_000
