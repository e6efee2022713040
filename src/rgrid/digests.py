"""Content addresses, computed alike by the CLI and the grid (kept apart from ``domain``: the
CLI imports this on every run, and the domain's dataclasses cost milliseconds to create).

A content address names its algorithm: ``blake3:<64 lowercase hex>`` for everything hashed
now, ``sha256:<64 lowercase hex>`` for what was stored before BLAKE3 (a migration prefixed
those, and they stay valid everywhere: bytes are always checked with the algorithm their
address names). BLAKE3 runs at 3 to 10 GB/s here against sha256's 1 to 1.5 GB/s, so checking every
byte no longer holds up a transfer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

#: what new content is hashed with
DEFAULT = "blake3"
ALGORITHMS = ("blake3", "sha256")
#: characters of the longest address (the database's columns hold this many)
MAX_LENGTH = 71
PATTERN = r"(?:blake3|sha256):[0-9a-f]{64}"
_DIGEST_RE = re.compile(PATTERN)


class _Hash(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


class Hasher:
    """Hashes bytes fed to it with one algorithm; ``result()`` is their content address."""

    __slots__ = ("_hash", "algorithm")

    def __init__(self, algorithm: str = DEFAULT) -> None:
        self.algorithm = algorithm
        self._hash = _new(algorithm)

    @classmethod
    def like(cls, digest: str) -> Hasher:
        """A hasher with the algorithm ``digest`` names (to check bytes against it)."""
        return cls(algorithm_of(digest))

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)

    def result(self) -> str:
        return f"{self.algorithm}:{self._hash.hexdigest()}"


def _new(algorithm: str) -> _Hash:
    if algorithm == "blake3":
        from blake3 import blake3  # imported only when hashing: `rgrid --help` never pays it

        # One thread: on 2 cores, with the transfer's own work beside it, more threads
        # measured no faster (4 GB/s either way, in 1 MiB pieces).
        return blake3()
    if algorithm == "sha256":
        import hashlib  # here: loading OpenSSL costs every command's start ms, for a rare digest

        return hashlib.sha256()
    raise ValueError(f"unknown hash algorithm {algorithm!r}")


def is_digest(value: object) -> bool:
    """Whether ``value`` is a content address this grid knows."""
    return isinstance(value, str) and _DIGEST_RE.fullmatch(value) is not None


def algorithm_of(digest: str) -> str:
    """The algorithm a (valid) content address names."""
    return digest.partition(":")[0]


def hex_of(digest: str) -> str:
    """The hex part of a (valid) content address."""
    return digest.partition(":")[2]


def of_bytes(data: bytes, algorithm: str = DEFAULT) -> str:
    """The content address of ``data``."""
    hasher = Hasher(algorithm)
    hasher.update(data)
    return hasher.result()


def of_file(path: Path, algorithm: str = DEFAULT, chunk: int = 1024 * 1024) -> str:
    """The content address of a file's bytes, read in pieces (never whole in memory).
    ``OSError`` as reading raises it."""
    hasher = Hasher(algorithm)
    with path.open("rb") as handle:
        while piece := handle.read(chunk):
            hasher.update(piece)
    return hasher.result()


def file_matches(path: Path, digest: str) -> bool:
    """Whether the file's bytes have the content address ``digest`` (hashed with the
    algorithm it names). ``OSError`` as reading raises it."""
    return of_file(path, algorithm_of(digest)) == digest


def of_tree(files: Iterable[tuple[str, str, int]], dirs: Iterable[str]) -> str:
    """The name of a project tree: the BLAKE3 of its canonical listing — every file as
    ``path NUL digest NUL size NUL``, sorted by path, then a NUL, then every directory no file
    implies as ``path NUL``, sorted. A POSIX path never holds NUL, so the listing reads one
    way only. The CLI and the grid compute it alike, so a tree is sent once and named by it
    after. (Joined strings, not JSON: the CLI computes it on every run, over thousands of
    files.)"""
    parts = [f"{path}\0{digest}\0{size}\0" for path, digest, size in sorted(files)]
    parts.append("\0")
    parts += [f"{path}\0" for path in sorted(set(dirs))]
    return of_bytes("".join(parts).encode("utf-8", "surrogatepass"))
