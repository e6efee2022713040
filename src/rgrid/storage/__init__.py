"""Blob storage: the ``ObjectStorage`` protocol, the rules for keys, and ``from_url``.

Backends live one per module (``local.py``, ``memory.py``, ``s3.py``); the server only ever sees
the protocol.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from rgrid import digests, errors

CHUNK_SIZE = 1024 * 1024  # bytes: open() yields at most this much at a time
MAX_KEY_LENGTH = 1024  # characters
MAX_SEGMENT_LENGTH = 200  # characters: leaves room for backend suffixes under NAME_MAX (255)

_SEGMENT_RE = re.compile(r"[A-Za-z0-9._-]+")
_SCHEMES = "file:///absolute/path, memory://, s3://bucket/prefix"


@dataclass(frozen=True)
class BlobInfo:
    """One stored blob: its key, its size in bytes and its content address
    (``digests``: ``blake3:<hex>``, or ``sha256:<hex>`` for a blob stored before BLAKE3)."""

    key: str
    size: int
    digest: str


class ObjectStorage(Protocol):
    """Content storage addressed by key.

    Keys are relative, ``/``-separated paths of ``[A-Za-z0-9._-]`` segments (see ``validate_key``);
    every method raises ``errors.UnsafePath`` for any other key. Backend failures surface as
    ``errors.StorageError``; no third-party or ``OSError`` exception escapes a backend.
    """

    async def put(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        digest: str | None = None,
        size: int | None = None,
    ) -> BlobInfo:
        """Stream ``chunks`` into the blob at ``key`` and return what was stored.

        When ``digest`` (a content address) and/or ``size`` (bytes) are given, the received bytes
        must match them, else ``errors.IntegrityError``; a malformed ``digest`` is
        ``errors.InvalidRequest``. The blob becomes visible atomically, only once complete and
        verified: a mismatch, an exception from ``chunks`` or a cancellation leaves nothing behind.
        Putting identical content again is harmless, also concurrently. ``chunks`` is closed (if it
        can be) when put() returns or raises.
        """
        ...

    def open(self, key: str, *, offset: int = 0) -> AsyncIterator[bytes]:
        """Yield the blob's bytes from ``offset`` on, in chunks of at most ``CHUNK_SIZE``.

        An async generator: ``errors.NotFound`` (missing key) is raised on the first iteration.
        An offset at or past the end yields nothing; a negative one is ``errors.InvalidRequest``.
        """
        ...

    async def stat(self, key: str, *, algorithm: str = digests.DEFAULT) -> BlobInfo | None:
        """Size and content address of the blob at ``key``, or None when there is none.
        ``algorithm``: the address's algorithm, to hash with where the storage must hash the
        blob again (its record lost, or of another algorithm)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the blob at ``key``; deleting a missing key is not an error."""
        ...

    async def copy_to_file(self, key: str, dest: Path) -> None:
        """Write the blob to the local file ``dest`` (its parent must exist), atomically.

        The file is an independent copy, never a link: changing it never changes the blob.
        ``errors.NotFound`` when the key is missing.
        """
        ...

    async def copy_to_files(self, blobs: Sequence[tuple[str, str, Path]]) -> list[bool]:
        """Copy each ``(key, digest, dest)`` blob to ``dest`` (its parent exists) in one go
        where this storage knows, without reading it again, that the blob holds ``digest``.
        Each is an independent copy, as with ``copy_to_file``. Returns, per blob, whether it
        was copied (the caller fetches and verifies the others one by one); a backend that
        cannot vouch for its blobs returns all False."""
        ...

    async def put_file(
        self,
        key: str,
        src: Path,
        *,
        digest: str | None = None,
        move: bool = False,
        verified: bool = False,
    ) -> BlobInfo:
        """Stream the local file ``src`` into the blob at ``key``, with put()'s verification.

        With ``move`` the caller gives ``src`` away: a backend on the same filesystem may
        rename it into place instead of copying it (it is gone afterwards either way, unless
        the put fails). ``verified``: the caller has hashed ``src`` to ``digest`` itself and
        nothing else writes it, so a backend that does not read it anyway need not re-read
        it. ``errors.NotFound`` when ``src`` does not exist.
        """
        ...

    async def health(self) -> None:
        """Return when the storage can be read and written, else raise ``errors.StorageError``."""
        ...

    async def download_url(self, key: str, expires_s: int) -> str | None:
        """A URL that serves the blob directly for ``expires_s`` seconds without the grid's
        credentials (an S3 presigned URL), or None when the backend has no such thing."""
        ...

    async def expire_unwritten(self, days: int) -> bool:
        """Have the backend itself delete blobs not written for ``days`` days: a backstop for
        what the janitor misses (S3: a bucket lifecycle rule for the prefix, which also drops
        multipart uploads left unfinished for a day). False where there is no such thing or it
        could not be set: then nothing ages out behind the grid's back."""
        ...

    async def rewrite(self, key: str) -> None:
        """Restart a blob's age for ``expire_unwritten`` (S3: copy the object onto itself); a
        blob that does not exist is left so."""
        ...


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a safe storage key, else raise ``errors.UnsafePath``.

    Safe: 1..MAX_KEY_LENGTH characters, relative, ``/``-separated segments of ``[A-Za-z0-9._-]``
    (at most MAX_SEGMENT_LENGTH each), no empty, ``.`` or ``..`` segment, and a first segment that
    does not start with ``.`` (reserved for backend bookkeeping such as ``.tmp``).
    """
    problem = _key_problem(key)
    if problem:
        raise errors.UnsafePath(f"unsafe storage key {key!r}: {problem}", details={"key": key})
    return key


def _key_problem(key: str) -> str | None:
    if not key:
        return "it is empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"it is longer than {MAX_KEY_LENGTH} characters"
    if key.startswith("."):
        return "a leading '.' is reserved for the storage backend"
    for segment in key.split("/"):
        if not segment:
            return "absolute paths and empty segments are not allowed"
        if segment in (".", ".."):
            return "'.' and '..' segments are not allowed"
        if len(segment) > MAX_SEGMENT_LENGTH:
            return f"a segment is longer than {MAX_SEGMENT_LENGTH} characters"
        if not _SEGMENT_RE.fullmatch(segment):
            return "segments may only contain A-Z a-z 0-9 . _ -"
    return None


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is a content address (``blake3:`` or ``sha256:`` and 64
    lowercase hex digits), else raise ``errors.InvalidRequest``."""
    if not digests.is_digest(digest):
        raise errors.InvalidRequest(
            f"not a content address (blake3: or sha256: and 64 lowercase hex digits): {digest!r}",
            details={"digest": digest},
        )
    return digest


class Verifier:
    """Hashes and counts a byte stream, and checks it against the digest and size promised
    (hashing with the algorithm the promised digest names; without one, ``digests.DEFAULT``)."""

    def __init__(self, key: str, *, digest: str | None, size: int | None) -> None:
        if size is not None and size < 0:
            raise errors.InvalidRequest(f"size must be >= 0, got {size}")
        self.key = key
        self.expected_digest = None if digest is None else validate_digest(digest)
        self.expected_size = size
        self.size = 0
        self._hash = digests.Hasher.like(digest) if digest else digests.Hasher()

    def update(self, data: bytes) -> None:
        """Account for ``data``; ``errors.IntegrityError`` once the promised size is exceeded."""
        self.size += len(data)
        if self.expected_size is not None and self.size > self.expected_size:
            raise self._mismatch("size", self.expected_size, f"more than {self.expected_size}")
        self._hash.update(data)

    def finish(self) -> BlobInfo:
        """The verified blob's info; ``errors.IntegrityError`` if the size or digest differ."""
        if self.expected_size is not None and self.size != self.expected_size:
            raise self._mismatch("size", self.expected_size, self.size)
        digest = self._hash.result()
        if self.expected_digest is not None and digest != self.expected_digest:
            raise self._mismatch("digest", self.expected_digest, digest)
        return BlobInfo(key=self.key, size=self.size, digest=digest)

    def _mismatch(self, what: str, expected: object, actual: object) -> errors.IntegrityError:
        return errors.IntegrityError(
            f"blob {self.key!r}: expected {what} {expected}, received {actual}",
            details={"key": self.key, "field": what, "expected": expected, "actual": actual},
        )


def blob_key(account_id: str, digest: str) -> str:
    """The content-addressed key of an account's blob: ``blobs/<account>/<hex[:2]>/<hex>`` for
    a sha256 address (where blobs were stored before BLAKE3), ``blobs/<account>/<hex[:2]>/<hex>.b3``
    for a BLAKE3 one (the same bytes under either address are two blobs: a key names one
    algorithm's address only).

    ``errors.InvalidRequest`` for a malformed digest, ``errors.UnsafePath`` for an account id that
    is not a single safe key segment (or starts with ``.``).
    """
    validate_digest(digest)
    if "/" in account_id or account_id.startswith("."):
        raise errors.UnsafePath(
            f"unsafe account id {account_id!r} in a blob key", details={"account_id": account_id}
        )
    hex_ = digests.hex_of(digest)
    suffix = "" if digests.algorithm_of(digest) == "sha256" else ".b3"
    return validate_key(f"blobs/{account_id}/{hex_[:2]}/{hex_}{suffix}")


def from_url(url: str) -> ObjectStorage:
    """Build the storage backend a URL names.

    ``file:///abs/path`` → ``LocalStorage`` rooted there; ``memory://`` → a new, empty
    ``InMemoryStorage`` (each call returns a separate one); ``s3://bucket/prefix`` → ``S3Storage``
    (endpoint and credentials from the environment). Any other URL is ``errors.InvalidRequest``
    naming the accepted schemes.
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        return _local_from_url(url, parts.netloc, parts.path, parts.query, parts.fragment)
    if parts.scheme == "memory":
        from rgrid.storage.memory import InMemoryStorage

        return InMemoryStorage()
    if parts.scheme == "s3":
        from rgrid.storage.s3 import S3Storage

        prefix = parts.path.strip("/")
        if not parts.netloc or parts.query or parts.fragment or (prefix and _key_problem(prefix)):
            raise errors.InvalidRequest(
                f"an S3 storage URL must be s3://bucket[/prefix], got {url!r}",
                details={"url": url},
            )
        return S3Storage(parts.netloc, prefix)
    raise errors.InvalidRequest(
        f"unsupported storage URL {url!r}; accepted schemes: {_SCHEMES}", details={"url": url}
    )


def _local_from_url(url: str, netloc: str, path: str, query: str, fragment: str) -> ObjectStorage:
    from rgrid.storage.local import LocalStorage

    raw = unquote(path)
    bad = netloc not in ("", "localhost") or query or fragment or "\x00" in raw
    if bad or not Path(raw).is_absolute():
        raise errors.InvalidRequest(
            f"a file storage URL must be file:///absolute/path, got {url!r}", details={"url": url}
        )
    return LocalStorage(Path(raw))
