"""Content-addressed uploads, scoped to an account: ask what is missing, then stream it in."""

from __future__ import annotations

import asyncio
import fcntl
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import IO

from rgrid import compression, digests, domain, errors, store
from rgrid.paths import safe_relpath
from rgrid.services import Grid, utcnow
from rgrid.storage import CHUNK_SIZE, Verifier, blob_key, validate_digest, writeback
from rgrid.store import blobs as repo

logger = logging.getLogger(__name__)

MAX_QUERY = 100_000
#: where the bytes of resumable uploads wait until complete (under RGRID_HOME)
STAGING = "uploads"
#: received bytes are written (and hashed) in pieces of about this size
WRITE_BYTES = 4 * 1024 * 1024


async def missing_blobs(
    grid: Grid, principal: domain.Principal, hashes: Sequence[str]
) -> list[str]:
    """The hashes the caller's account does not have yet, in the order given, each once."""
    if len(hashes) > MAX_QUERY:
        raise errors.InvalidRequest(f"ask about at most {MAX_QUERY} hashes at once")
    for sha in hashes:
        validate_digest(sha)
    async with store.transaction(grid.sessions) as session:
        present = await repo.present_blobs(session, principal.account.id, hashes)
    return list(dict.fromkeys(h for h in hashes if h not in present))


async def upload_blob(
    grid: Grid,
    account_id: str,
    digest: str,
    chunks: AsyncIterator[bytes],
    size: int | None,
    encoding: str | None = None,
    *,
    resumable: bool = False,
    offset: int = 0,
) -> int | None:
    """Store a streamed body under its hash; verified before it becomes visible.

    ``encoding`` "zstd": the body is compressed, decompressed here as it arrives (``size`` is
    then the decompressed size). Raises ``IntegrityError`` when the bytes do not hash to
    ``digest`` or the compressed stream is corrupt or truncated (nothing is stored).
    """
    if encoding not in (None, "identity", compression.ENCODING):
        raise errors.InvalidRequest(
            f"unsupported Content-Encoding {encoding!r}", hint="send zstd or no encoding"
        )
    key = blob_key(account_id, digest)
    body = _received(grid, chunks)
    compressed = encoding == compression.ENCODING
    if resumable or offset or compressed:
        # decompressed to disk as it arrives: memory stays bounded whatever the ratio
        return await _staged_upload(grid, account_id, digest, body, size, offset, compressed)
    info = await grid.storage.put(key, _counted(grid, body), digest=digest, size=size)
    async with store.transaction(grid.sessions) as session:
        await repo.record_blob(session, account_id, digest, info.size, utcnow())
    return info.size


async def _received(grid: Grid, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The body's bytes as they travel, counted; the request stream is closed at the end."""
    try:
        async for chunk in chunks:
            grid.transfers.received_wire += len(chunk)
            if chunk:
                yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def _counted(grid: Grid, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        grid.transfers.received += len(chunk)
        yield chunk


async def sent(grid: Grid, chunks: AsyncIterator[bytes], *, compress: bool) -> AsyncIterator[bytes]:
    """A stored blob's bytes on their way out, compressed if asked, counted both ways."""
    compressor = compression.Compressor() if compress else None
    async for chunk in chunks:
        grid.transfers.sent += len(chunk)
        data = compressor.feed(chunk) if compressor is not None else chunk
        if data:
            grid.transfers.sent_wire += len(data)
            yield data
    if compressor is not None:
        tail = compressor.finish()
        grid.transfers.sent_wire += len(tail)
        yield tail


def _staging_path(grid: Grid, account_id: str, digest: str) -> Path:
    validate_digest(digest)
    # "<hex>.<algorithm>.part": no ":" in a file name (not every file system takes one)
    name = f"{digests.hex_of(digest)}.{digests.algorithm_of(digest)}.part"
    return grid.settings.home / STAGING / safe_relpath(account_id) / name


async def upload_offset(grid: Grid, account_id: str, digest: str) -> int:
    """How many bytes of a resumable upload of this content the grid holds (0: none)."""
    path = _staging_path(grid, account_id, digest)
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


async def _staged_upload(
    grid: Grid,
    account_id: str,
    digest: str,
    body: AsyncIterator[bytes],
    size: int | None,
    offset: int,
    compressed: bool,
) -> int | None:
    """Append this piece, decompressed if need be, to the staged upload (kept as it arrives,
    so a cut connection loses nothing), hashing it on the way; once all ``size`` bytes are
    there and match ``digest``, store the blob. Returns the stored size, or None while the
    upload is still incomplete."""
    if size is None:
        raise errors.InvalidRequest(f"this upload needs the {compression.SIZE_HEADER} header")
    path = _staging_path(grid, account_id, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = blob_key(account_id, digest)
    with path.open("ab") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise errors.Conflict("this content is being uploaded by another request") from exc
        held = handle.tell()
        if offset != held:
            raise errors.Conflict(
                f"the upload continues at byte {held}, not {offset}", details={"offset": held}
            )
        verifier = Verifier(key, digest=digest, size=size)
        try:
            if held:  # resumed: the bytes held from before count towards the hash
                await asyncio.to_thread(_hash_file, path, held, verifier)
            await _append(grid, handle, body, verifier, size - held if compressed else None)
        except errors.IntegrityError:
            handle.truncate(0)  # these bytes are not the content announced: start over
            raise
        if handle.tell() < size:
            return None
        try:
            verifier.finish()
        except errors.IntegrityError:
            path.unlink(missing_ok=True)
            raise
        # hashed already: moved (not copied, not re-read) where the storage is on this disk
        info = await grid.storage.put_file(key, path, digest=digest, move=True, verified=True)
    async with store.transaction(grid.sessions) as session:
        await repo.record_blob(session, account_id, digest, info.size, utcnow())
    return info.size


def _hash_file(path: Path, size: int, verifier: Verifier) -> None:
    with path.open("rb") as handle:
        while size > 0 and (data := handle.read(min(CHUNK_SIZE, size))):
            verifier.update(data)
            size -= len(data)


async def _append(
    grid: Grid,
    handle: IO[bytes],
    body: AsyncIterator[bytes],
    verifier: Verifier,
    decompress_room: int | None,
) -> None:
    """Write ``body`` to ``handle`` through ``verifier`` (decompressed first, to at most
    ``decompress_room`` bytes, when that is given). Pieces gather to ``WRITE_BYTES`` and go to a
    worker thread (hashing and writing release the GIL) while the next ones arrive; they go as
    they arrived, never joined: the event loop, which receives every connection's bytes, makes
    no copy of them."""

    def write(piece: bytes) -> None:
        verifier.update(piece)  # first: bytes past the announced size are never written
        grid.transfers.received += len(piece)
        handle.write(piece)

    decompressor = None
    if decompress_room is not None:
        decompressor = compression.Decompressor(write, decompress_room)
    sink = _to_disk(write if decompressor is None else decompressor.feed, handle)
    gathered: list[bytes] = []
    gathered_bytes = 0
    pending: asyncio.Task[None] | None = None
    try:
        async for chunk in body:
            gathered.append(chunk)
            gathered_bytes += len(chunk)
            if gathered_bytes >= WRITE_BYTES:
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(asyncio.to_thread(sink, gathered))
                gathered, gathered_bytes = [], 0
        if pending is not None:
            await pending
        pending = None
        await asyncio.to_thread(_last_pieces, sink, gathered, decompressor, handle)
    finally:
        if pending is not None:
            # the write in flight ends before the caller may truncate; the body's error wins
            await asyncio.gather(pending, return_exceptions=True)


def _last_pieces(
    sink: Callable[[list[bytes]], None],
    pieces: list[bytes],
    decompressor: compression.Decompressor | None,
    handle: IO[bytes],
) -> None:
    if pieces:
        sink(pieces)
    if decompressor is not None:
        decompressor.finish()
    handle.flush()


def _to_disk(sink: Callable[[bytes], None], handle: IO[bytes]) -> Callable[[list[bytes]], None]:
    """``sink`` for each piece, then the kernel starts writing the new bytes out: the fsync
    before the blob is stored then has little left to wait for."""

    def put(pieces: list[bytes]) -> None:
        with writeback.pushed(handle):
            for piece in pieces:
                sink(piece)

    return put


async def lose_blob(grid: Grid, account_id: str, digest: str, what: str) -> errors.BlobCorrupt:
    """Content found lost or damaged on read: forget it (its row, so ``/blobs/missing`` asks
    for it again, and whatever bytes are left) and return the error that says so."""
    logger.error(
        "blob lost", extra={"action": "blob_lost", "account_id": account_id, "digest": digest}
    )
    async with store.transaction(grid.sessions) as session:
        await repo.forget_blobs(session, [(account_id, digest)])
    await grid.storage.delete(blob_key(account_id, digest))
    return errors.BlobCorrupt(
        f"{what} is lost or damaged on the grid (digest {digest[:19]}…)",
        hint="run the same `rgrid run` again: it uploads its inputs anew and recreates outputs",
        details={"digest": digest},
    )


async def holds(grid: Grid, account_id: str, digest: str, size: int | None = None) -> bool:
    """Whether the storage holds the blob with this content address (and ``size``), by its
    own record: local storage re-hashes a file changed since it was written, with the
    algorithm the address names."""
    key = blob_key(account_id, digest)
    info = await grid.storage.stat(key, algorithm=digests.algorithm_of(digest))
    return info is not None and info.digest == digest and size in (None, info.size)


async def check_blob(grid: Grid, account_id: str, digest: str, size: int, what: str) -> None:
    """Before serving a blob: it exists with the size and digest recorded (``holds``), else
    ``BlobCorrupt`` and the blob is marked missing."""
    if not await holds(grid, account_id, digest, size):
        raise await lose_blob(grid, account_id, digest, what)


async def verified_read(
    grid: Grid, account_id: str, digest: str, size: int, what: str
) -> AsyncIterator[bytes]:
    """A blob's bytes, hashed as they go: the last chunk is held back until the whole matches,
    so damaged content never arrives complete (the response breaks off, and the blob is
    marked missing for the next request to say so)."""
    hasher = digests.Hasher.like(digest)
    seen = 0
    held: bytes | None = None
    async for chunk in grid.storage.open(blob_key(account_id, digest)):
        if held is not None:
            yield held
        hasher.update(chunk)
        seen += len(chunk)
        held = chunk
    if seen != size or hasher.result() != digest:
        raise await lose_blob(grid, account_id, digest, what)
    if held is not None:
        yield held
