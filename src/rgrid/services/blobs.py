"""Content-addressed uploads, scoped to an account: ask what is missing, then stream it in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from rgrid import compression, domain, errors, store
from rgrid.services import Grid, utcnow
from rgrid.storage import blob_key, validate_sha256
from rgrid.store import blobs as repo

MAX_QUERY = 100_000


async def missing_blobs(
    grid: Grid, principal: domain.Principal, hashes: Sequence[str]
) -> list[str]:
    """The hashes the caller's account does not have yet, in the order given, each once."""
    if len(hashes) > MAX_QUERY:
        raise errors.InvalidRequest(f"ask about at most {MAX_QUERY} hashes at once")
    for sha in hashes:
        validate_sha256(sha)
    async with store.transaction(grid.sessions) as session:
        present = await repo.present_blobs(session, principal.account.id, hashes)
    return list(dict.fromkeys(h for h in hashes if h not in present))


async def upload_blob(
    grid: Grid,
    principal: domain.Principal,
    sha256: str,
    chunks: AsyncIterator[bytes],
    size: int | None,
    encoding: str | None = None,
) -> int:
    """Store a streamed body under its hash; verified before it becomes visible.

    ``encoding`` "zstd": the body is compressed, decompressed here as it arrives (``size`` is
    then the decompressed size). Raises ``IntegrityError`` when the bytes do not hash to
    ``sha256`` or the compressed stream is corrupt or truncated (nothing is stored).
    """
    if encoding not in (None, "identity", compression.ENCODING):
        raise errors.InvalidRequest(
            f"unsupported Content-Encoding {encoding!r}", hint="send zstd or no encoding"
        )
    key = blob_key(principal.account.id, sha256)
    body = _received(grid, chunks, compressed=encoding == compression.ENCODING)
    info = await grid.storage.put(key, body, sha256=sha256, size=size)
    async with store.transaction(grid.sessions) as session:
        await repo.record_blob(session, principal.account.id, sha256, info.size, utcnow())
    return info.size


async def _received(
    grid: Grid, chunks: AsyncIterator[bytes], *, compressed: bool
) -> AsyncIterator[bytes]:
    """The body's bytes, decompressed if they travel compressed, counted both ways."""
    decompressor = compression.Decompressor() if compressed else None
    try:
        async for chunk in chunks:
            grid.transfers.received_wire += len(chunk)
            data = decompressor.feed(chunk) if decompressor is not None else chunk
            grid.transfers.received += len(data)
            if data:
                yield data
        if decompressor is not None:
            decompressor.finish()
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


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
