"""InMemoryStorage: a dict-backed ``ObjectStorage`` for tests and throwaway grids."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from rgrid import digests, errors
from rgrid.storage import CHUNK_SIZE, BlobInfo, Verifier, _stream, validate_key


class InMemoryStorage(_stream.FilesThroughPut, _stream.NoLocalFiles, _stream.ServedByTheGrid):
    """``ObjectStorage`` that keeps every blob in a dict; contents vanish with the object.

    Same contract as the real backends, integrity checks and key validation included, so the
    contract suite runs against it unchanged. Unlike a filesystem it allows both ``a`` and ``a/b``.
    """

    def __init__(self) -> None:
        self._blobs: dict[str, tuple[BlobInfo, bytes]] = {}

    def __repr__(self) -> str:
        return f"InMemoryStorage({len(self._blobs)} blobs)"

    async def put(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        digest: str | None = None,
        size: int | None = None,
    ) -> BlobInfo:
        """See ``ObjectStorage.put``; the blob is stored by one dict assignment once verified."""
        async with _stream.closing(chunks):
            validate_key(key)
            verifier = Verifier(key, digest=digest, size=size)
            parts: list[bytes] = []
            async with contextlib.aclosing(_stream.rechunk(chunks)) as pieces:
                async for data in pieces:
                    verifier.update(data)
                    parts.append(data)
            info = verifier.finish()
        self._blobs[key] = (info, b"".join(parts))
        return info

    async def open(self, key: str, *, offset: int = 0) -> AsyncIterator[bytes]:
        """See ``ObjectStorage.open``; yields a snapshot taken at the first iteration."""
        if offset < 0:
            raise errors.InvalidRequest(f"offset must be >= 0, got {offset}")
        data = self._get(key)
        for start in range(offset, len(data), CHUNK_SIZE):
            yield data[start : start + CHUNK_SIZE]
            await asyncio.sleep(0)  # let other tasks run between chunks, as real I/O would

    async def stat(
        self,
        key: str,
        *,
        algorithm: str = digests.DEFAULT,  # noqa: ARG002 (every blob here carries its digest)
    ) -> BlobInfo | None:
        """See ``ObjectStorage.stat``."""
        entry = self._blobs.get(validate_key(key))
        return entry[0] if entry else None

    async def delete(self, key: str) -> None:
        """See ``ObjectStorage.delete``."""
        self._blobs.pop(validate_key(key), None)

    async def copy_to_file(self, key: str, dest: Path) -> None:
        """See ``ObjectStorage.copy_to_file``."""
        data = self._get(key)
        with _stream.wrap_os_errors(f"copy blob {key!r} to {dest.name!r}"):
            await asyncio.to_thread(_stream.replace_atomically, dest, lambda t: t.write_bytes(data))

    async def health(self) -> None:
        """See ``ObjectStorage.health``; memory is always usable."""

    def _get(self, key: str) -> bytes:
        entry = self._blobs.get(validate_key(key))
        if entry is None:
            raise errors.NotFound(f"blob {key!r} not found", details={"key": key})
        return entry[1]
