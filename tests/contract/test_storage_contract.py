"""The ObjectStorage contract, run against every implementation (STYLE C19)."""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.s3server import MIN_PART_BYTES, S3Server, start_s3_server

from rgrid import digests, errors
from rgrid.storage import CHUNK_SIZE, BlobInfo, ObjectStorage, blob_key
from rgrid.storage.local import LocalStorage
from rgrid.storage.memory import InMemoryStorage
from rgrid.storage.s3 import PART_SIZE, S3Storage

BIG = random.Random(1234).randbytes(3 * CHUNK_SIZE + CHUNK_SIZE // 2)  # 3.5 MiB
KEY = "blobs/acct/ab/some-blob"
UNSAFE_KEYS = ["../x", "/abs", "a//b", "a/../b", "a\x00b", "", "a/", "./a", ".tmp/x", "a b", "é"]


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    yield from start_s3_server()


@pytest.fixture(params=["local", "memory", "s3", "s3-multipart"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStorage:
    if request.param == "local":
        return LocalStorage(tmp_path / "root")
    if request.param == "memory":
        return InMemoryStorage()
    server: S3Server = request.getfixturevalue("s3_server")
    client = server.client()
    bucket = f"contract-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    # "s3-multipart": parts of 1 MiB, so the 3.5 MiB blobs go up in several parts
    part_size = MIN_PART_BYTES if request.param == "s3-multipart" else PART_SIZE
    return S3Storage(bucket, "some/prefix", client=client, part_size=part_size)


async def chunked(data: bytes, size: int = 300_001) -> AsyncIterator[bytes]:
    """Yield ``data`` in odd-sized pieces, letting other tasks run in between."""
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0)


async def read_all(storage: ObjectStorage, key: str, offset: int = 0) -> bytes:
    chunks = [chunk async for chunk in storage.open(key, offset=offset)]
    assert all(0 < len(chunk) <= CHUNK_SIZE for chunk in chunks)
    return b"".join(chunks)


def sha(data: bytes) -> str:
    return digests.of_bytes(data)


def visible_files(storage: ObjectStorage) -> list[str]:
    """Every file a local backend left on disk (.tmp must be empty too); every object and
    unfinished multipart upload an S3 backend left in its bucket. [] for other backends."""
    if isinstance(storage, S3Storage):
        listed = storage.client.list_objects_v2(Bucket=storage.bucket).get("Contents", [])
        uploads = storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", [])
        return sorted(o["Key"] for o in listed) + [f"upload:{u['Key']}" for u in uploads]
    if not isinstance(storage, LocalStorage) or not storage.root.exists():
        return []
    return sorted(str(p.relative_to(storage.root)) for p in storage.root.rglob("*") if p.is_file())


async def assert_nothing_stored(storage: ObjectStorage, key: str) -> None:
    assert await storage.stat(key) is None
    assert visible_files(storage) == []
    with pytest.raises(errors.NotFound):
        await read_all(storage, key)


async def test_round_trip_multi_chunk_blob(storage: ObjectStorage) -> None:
    info = await storage.put(KEY, chunked(BIG))
    assert info == BlobInfo(key=KEY, size=len(BIG), digest=sha(BIG))
    assert await read_all(storage, KEY) == BIG
    assert await storage.stat(KEY) == info


async def test_empty_blob(storage: ObjectStorage) -> None:
    info = await storage.put("empty", chunked(b""), digest=sha(b""), size=0)
    assert info == BlobInfo(key="empty", size=0, digest=sha(b""))
    assert await read_all(storage, "empty") == b""


async def test_put_with_correct_digest_and_size(storage: ObjectStorage) -> None:
    info = await storage.put(KEY, chunked(BIG), digest=sha(BIG), size=len(BIG))
    assert info.digest == sha(BIG)
    assert info.size == len(BIG)


async def test_put_with_wrong_digest_stores_nothing(storage: ObjectStorage) -> None:
    with pytest.raises(errors.IntegrityError):
        await storage.put(KEY, chunked(BIG), digest=sha(b"something else"))
    await assert_nothing_stored(storage, KEY)


@pytest.mark.parametrize("delta", [-1, 1])
async def test_put_with_wrong_size_stores_nothing(storage: ObjectStorage, delta: int) -> None:
    with pytest.raises(errors.IntegrityError):
        await storage.put(KEY, chunked(BIG), size=len(BIG) + delta)
    await assert_nothing_stored(storage, KEY)


@pytest.mark.parametrize("bad", ["ABC", "A" * 64, "g" * 64, "a" * 63])
async def test_malformed_digest_is_invalid_request(storage: ObjectStorage, bad: str) -> None:
    with pytest.raises(errors.InvalidRequest) as info:
        await storage.put(KEY, chunked(b"x"), digest=bad)
    assert info.value.code == "VALIDATION_ERROR"
    await assert_nothing_stored(storage, KEY)


async def test_failing_stream_stores_nothing_and_is_closed(storage: ObjectStorage) -> None:
    closed = []

    async def failing() -> AsyncIterator[bytes]:
        try:
            yield BIG[: 2 * CHUNK_SIZE]
            raise ConnectionResetError("client went away")
        finally:
            closed.append(True)

    with pytest.raises(ConnectionResetError):
        await storage.put(KEY, failing())
    assert closed == [True]
    await assert_nothing_stored(storage, KEY)


async def test_rejected_stream_is_closed_early(storage: ObjectStorage) -> None:
    sent = []

    async def endless() -> AsyncIterator[bytes]:
        while True:
            sent.append(CHUNK_SIZE)
            yield bytes(CHUNK_SIZE)

    with pytest.raises(errors.IntegrityError):
        await storage.put(KEY, endless(), size=10)
    assert len(sent) <= 2
    await assert_nothing_stored(storage, KEY)


async def test_cancelled_put_stores_nothing(storage: ObjectStorage) -> None:
    started = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield BIG[:CHUNK_SIZE]
        yield BIG[CHUNK_SIZE : 2 * CHUNK_SIZE]
        started.set()
        await asyncio.Event().wait()
        yield b"never"

    task = asyncio.create_task(storage.put(KEY, stalled()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_nothing_stored(storage, KEY)


async def test_failed_overwrite_keeps_the_old_blob(storage: ObjectStorage) -> None:
    old = await storage.put(KEY, chunked(b"old content"))
    with pytest.raises(errors.IntegrityError):
        await storage.put(KEY, chunked(BIG), digest=sha(b"nope"))
    assert await storage.stat(KEY) == old
    assert await read_all(storage, KEY) == b"old content"


async def test_overwrite_replaces_content(storage: ObjectStorage) -> None:
    await storage.put(KEY, chunked(b"first"))
    info = await storage.put(KEY, chunked(b"second!"))
    assert await storage.stat(KEY) == info == BlobInfo(KEY, 7, sha(b"second!"))
    assert await read_all(storage, KEY) == b"second!"


@pytest.mark.parametrize("offset", [0, 1, CHUNK_SIZE, len(BIG) - 1, len(BIG), len(BIG) + 5])
async def test_open_with_offset(storage: ObjectStorage, offset: int) -> None:
    await storage.put(KEY, chunked(BIG))
    assert await read_all(storage, KEY, offset=offset) == BIG[offset:]


async def test_open_with_negative_offset_is_invalid(storage: ObjectStorage) -> None:
    await storage.put(KEY, chunked(b"data"))
    with pytest.raises(errors.InvalidRequest):
        await read_all(storage, KEY, offset=-1)


async def test_open_missing_is_not_found(storage: ObjectStorage) -> None:
    with pytest.raises(errors.NotFound):
        await read_all(storage, "no/such/blob")


async def test_stat_missing_is_none(storage: ObjectStorage) -> None:
    assert await storage.stat("no/such/blob") is None


async def test_delete_is_idempotent(storage: ObjectStorage) -> None:
    await storage.put(KEY, chunked(b"data"))
    await storage.delete(KEY)
    await storage.delete(KEY)
    await storage.delete("never/existed")
    await assert_nothing_stored(storage, KEY)


@pytest.mark.parametrize("algorithm", digests.ALGORITHMS)
async def test_content_addressed_key(storage: ObjectStorage, algorithm: str) -> None:
    digest = digests.of_bytes(BIG, algorithm)  # sha256: content stored before BLAKE3
    key = blob_key("acct", digest)
    assert await storage.put(key, chunked(BIG), digest=digest) == BlobInfo(key, len(BIG), digest)
    assert await storage.stat(key, algorithm=algorithm) == BlobInfo(key, len(BIG), digest)
    assert [c async for c in storage.open(key)] and await read_all(storage, key) == BIG


def unsafe_calls(storage: ObjectStorage, key: str, tmp_path: Path) -> Iterable[Awaitable[object]]:
    src = tmp_path / "src.bin"
    src.write_bytes(b"x")
    yield storage.put(key, chunked(b"x"))
    yield read_all(storage, key)
    yield storage.stat(key)
    yield storage.delete(key)
    yield storage.copy_to_file(key, tmp_path / "dest.bin")
    yield storage.copy_to_files([(key, "blake3:" + "0" * 64, tmp_path / "dest.bin")])
    yield storage.put_file(key, src)


@pytest.mark.parametrize("key", UNSAFE_KEYS)
async def test_unsafe_keys_are_refused(storage: ObjectStorage, key: str, tmp_path: Path) -> None:
    for call in unsafe_calls(storage, key, tmp_path):
        with pytest.raises(errors.UnsafePath):
            await call
    assert visible_files(storage) == []
    assert not (tmp_path / "dest.bin").exists()


async def test_copy_to_file_is_an_independent_copy(storage: ObjectStorage, tmp_path: Path) -> None:
    await storage.put(KEY, chunked(BIG))
    dest = tmp_path / "work" / "input.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"stale")
    await storage.copy_to_file(KEY, dest)
    assert dest.read_bytes() == BIG
    with dest.open("r+b") as fh:  # the user script edits its input in place
        fh.write(b"CHANGED")
    assert await read_all(storage, KEY) == BIG
    assert await storage.stat(KEY) == BlobInfo(KEY, len(BIG), sha(BIG))
    assert sorted(p.name for p in dest.parent.iterdir()) == ["input.bin"]


async def test_copy_to_files_copies_only_what_it_can_vouch_for(
    storage: ObjectStorage, tmp_path: Path
) -> None:
    """Bulk copies: a stored blob under its true digest may be copied (the local disk does);
    a missing blob or a wrong digest never is, and leaves no file."""
    await storage.put(KEY, chunked(BIG))
    work = tmp_path / "work"
    work.mkdir()
    wanted = [
        (KEY, sha(BIG), work / "input.bin"),
        ("no/such/blob", sha(BIG), work / "missing.bin"),
        (KEY, sha(b"other"), work / "wrong.bin"),
    ]
    copied = await storage.copy_to_files(wanted)
    assert copied[1:] == [False, False]
    assert copied[0] is isinstance(storage, LocalStorage)
    assert sorted(p.name for p in work.iterdir()) == (["input.bin"] if copied[0] else [])
    if copied[0]:
        dest = work / "input.bin"
        assert dest.read_bytes() == BIG
        with dest.open("r+b") as fh:  # an independent copy: editing it leaves the blob
            fh.write(b"CHANGED")
        assert await read_all(storage, KEY) == BIG


async def test_copy_to_file_missing_is_not_found(storage: ObjectStorage, tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    with pytest.raises(errors.NotFound):
        await storage.copy_to_file("no/such/blob", dest)
    assert list(tmp_path.glob("*out.bin*")) == []


async def test_put_file(storage: ObjectStorage, tmp_path: Path) -> None:
    src = tmp_path / "upload.bin"
    src.write_bytes(BIG)
    info = await storage.put_file(KEY, src, digest=sha(BIG))
    assert info == BlobInfo(KEY, len(BIG), sha(BIG))
    assert await read_all(storage, KEY) == BIG


async def test_put_file_verifies(storage: ObjectStorage, tmp_path: Path) -> None:
    src = tmp_path / "upload.bin"
    src.write_bytes(BIG)
    with pytest.raises(errors.IntegrityError):
        await storage.put_file(KEY, src, digest=sha(b"other"))
    await assert_nothing_stored(storage, KEY)


async def test_put_file_missing_source_is_not_found(storage: ObjectStorage, tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound):
        await storage.put_file(KEY, tmp_path / "missing.bin")
    await assert_nothing_stored(storage, KEY)


async def test_concurrent_puts_of_same_content(storage: ObjectStorage) -> None:
    digest = sha(BIG)
    results = await asyncio.gather(
        *(storage.put(KEY, chunked(BIG), digest=digest, size=len(BIG)) for _ in range(3))
    )
    assert results == [BlobInfo(KEY, len(BIG), digest)] * 3
    assert await storage.stat(KEY) == BlobInfo(KEY, len(BIG), digest)
    assert await read_all(storage, KEY) == BIG


async def test_keys_are_independent(storage: ObjectStorage) -> None:
    await storage.put("a/one", chunked(b"1"))
    await storage.put("a/two", chunked(b"22"))
    await storage.delete("a/one")
    assert await storage.stat("a/one") is None
    assert await read_all(storage, "a/two") == b"22"


async def test_health_ok(storage: ObjectStorage) -> None:
    await storage.health()
    assert visible_files(storage) == []


async def test_download_url_serves_the_blob_or_is_none(storage: ObjectStorage) -> None:
    import httpx

    await storage.put(KEY, chunked(BIG))
    url = await storage.download_url(KEY, 60)
    if not isinstance(storage, S3Storage):
        assert url is None  # served only through the grid
        return
    assert url is not None
    answer = await asyncio.to_thread(httpx.get, url)
    assert answer.status_code == 200 and answer.content == BIG


async def test_put_file_with_move_takes_the_file(storage: ObjectStorage, tmp_path: Path) -> None:
    src = tmp_path / "staged.bin"
    src.write_bytes(BIG)
    info = await storage.put_file(KEY, src, digest=sha(BIG), move=True)
    assert info == BlobInfo(KEY, len(BIG), sha(BIG))
    assert not src.exists()
    assert await read_all(storage, KEY) == BIG
    assert await storage.stat(KEY) == info
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not what was announced")
    with pytest.raises(errors.IntegrityError):
        await storage.put_file("other/key", bad, digest=sha(BIG), move=True)
    assert await storage.stat("other/key") is None


async def test_put_file_verified_moves_without_rereading(
    storage: ObjectStorage, tmp_path: Path
) -> None:
    src = tmp_path / "hashed.bin"
    src.write_bytes(BIG)
    info = await storage.put_file(KEY, src, digest=sha(BIG), move=True, verified=True)
    assert info == BlobInfo(KEY, len(BIG), sha(BIG))
    assert not src.exists()
    assert await read_all(storage, KEY) == BIG
    assert await storage.stat(KEY) == info


async def test_rewrite_keeps_the_blob_and_restarts_its_age(storage: ObjectStorage) -> None:
    info = await storage.put(KEY, chunked(BIG))
    before = None
    if isinstance(storage, S3Storage):
        before = storage.client.head_object(Bucket=storage.bucket, Key=storage._name(KEY))
        await asyncio.sleep(1.1)  # S3 times have whole seconds
    await storage.rewrite(KEY)
    assert await storage.stat(KEY) == info
    assert await read_all(storage, KEY) == BIG
    await storage.rewrite("never/written")  # nothing to keep: nothing happens
    assert await storage.stat("never/written") is None
    if isinstance(storage, S3Storage):
        assert before is not None
        after = storage.client.head_object(Bucket=storage.bucket, Key=storage._name(KEY))
        assert after["LastModified"] > before["LastModified"]
        assert after["Metadata"] == {"digest": info.digest}  # the sidecar is not needed now
        assert visible_files(storage) == [storage._name(KEY)]


async def test_s3_objects_stored_before_blake3_read_as_sha256_addresses(
    s3_server: S3Server,
) -> None:
    client = s3_server.client()
    bucket = f"legacy-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    storage = S3Storage(bucket, "p", client=client)
    old = hashlib.sha256(BIG).hexdigest()
    # as the grid stored them then: the hash in the object's metadata, or (uploaded in
    # parts) in a sidecar object under .sha256/
    client.put_object(Bucket=bucket, Key="p/whole", Body=BIG, Metadata={"sha256": old})
    client.put_object(Bucket=bucket, Key="p/parts", Body=BIG)
    client.put_object(Bucket=bucket, Key="p/.sha256/parts", Body=old.encode())

    for key in ("whole", "parts"):
        assert await storage.stat(key) == BlobInfo(key, len(BIG), f"sha256:{old}")
        assert await read_all(storage, key) == BIG
    await storage.rewrite("parts")  # the address moves into the metadata, the sidecar goes
    head = client.head_object(Bucket=bucket, Key="p/parts")
    assert head["Metadata"] == {"digest": f"sha256:{old}"}
    await storage.delete("whole")
    names = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))
    assert names == ["p/parts"]


@pytest.mark.parametrize("part_size", [PART_SIZE, MIN_PART_BYTES])
async def test_every_s3_write_carries_s3s_own_crc32(s3_server: S3Server, part_size: int) -> None:
    client = s3_server.client()
    bucket = f"crc-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    sent: list[tuple[str, bool]] = []

    def record(request: Any, **_: Any) -> None:
        if request.method == "PUT":
            sent.append((request.url, "x-amz-checksum-crc32" in request.headers))

    client.meta.events.register("before-send.s3.PutObject", record)
    client.meta.events.register("before-send.s3.UploadPart", record)
    storage = S3Storage(bucket, "p", client=client, part_size=part_size)
    await storage.put(KEY, chunked(BIG), digest=sha(BIG))
    assert sent and all(carried for _, carried in sent), sent
    assert len(sent) >= (2 if part_size == MIN_PART_BYTES else 1)


async def test_expire_unwritten_is_a_lifecycle_rule_on_s3_only(storage: ObjectStorage) -> None:
    if not isinstance(storage, S3Storage):
        assert await storage.expire_unwritten(31) is False
        return
    client = storage.client
    theirs = {
        "ID": "someone-else",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 7},
    }
    client.put_bucket_lifecycle_configuration(
        Bucket=storage.bucket, LifecycleConfiguration={"Rules": [theirs]}
    )
    assert await storage.expire_unwritten(31) is True
    assert await storage.expire_unwritten(31) is True  # again (a restart): not doubled
    assert await storage.expire_unwritten(8) is True  # a new retention period: updated
    rules = client.get_bucket_lifecycle_configuration(Bucket=storage.bucket)["Rules"]
    assert [r["ID"] for r in rules] == ["someone-else", "rgrid-expiry:some/prefix"]
    ours = rules[1]
    assert ours["Filter"] == {"Prefix": "some/prefix/"}
    assert ours["Expiration"] == {"Days": 8}
    assert ours["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert rules[0]["Expiration"] == {"Days": 7}  # theirs untouched


async def test_a_lifecycle_rule_that_cannot_be_set_leaves_expiry_to_the_janitor(
    s3_server: S3Server,
) -> None:
    missing = S3Storage(f"no-such-bucket-{uuid.uuid4().hex[:8]}", "p", client=s3_server.client())
    assert await missing.expire_unwritten(31) is False  # logged; the grid still starts


async def test_rewrite_of_a_big_blob_copies_it_in_parts(s3_server: S3Server) -> None:
    """Over boto's 8 MiB threshold the copy onto itself goes in parts (UploadPartCopy)."""
    client = s3_server.client()
    bucket = f"rewrite-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    storage = S3Storage(bucket, "p", client=client, part_size=MIN_PART_BYTES)
    data = random.Random(5).randbytes(9 * CHUNK_SIZE)
    info = await storage.put(KEY, chunked(data))
    assert len(visible_files(storage)) == 2  # the blob and its digest sidecar (sent in parts)
    await storage.rewrite(KEY)
    assert await storage.stat(KEY) == info
    assert await read_all(storage, KEY) == data
    assert visible_files(storage) == [storage._name(KEY)]  # the hash is in the metadata now
