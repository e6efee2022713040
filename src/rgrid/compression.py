"""Compression in transit (SPEC §5): bodies over 1 MiB travel as zstd unless the file type is
already compressed or the grid is on this machine (``RGRID_COMPRESSION``); the receiver
decompresses as the bytes arrive and verifies the result.

Shared by the CLI and the server. ``zstandard`` is imported only when a body is actually
compressed or decompressed, so the CLI's start-up does not pay for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import IO, Any, cast

from rgrid import errors

ENCODING = "zstd"
#: the header carrying the size of the body before compression
SIZE_HEADER = "x-rgrid-size"
MIN_BYTES = 1024 * 1024
#: zstd level 1: on CSV the same ratio as the default 3 (2.9x) at 1.5x its speed (measured,
#: docs/performance.md), and compressing is on the critical path of every transfer
LEVEL = 1
#: file types that are compressed already: zstd would spend time for nothing
ALREADY_COMPRESSED = frozenset(
    """
    .7z .aac .apk .avif .br .bz2 .docx .epub .flac .gif .gz .heic .jar .jpeg .jpg .lz .lz4 .lzma
    .m4a .mkv .mov .mp3 .mp4 .npz .odt .ogg .opus .parquet .png .pptx .rar .tbz2 .tgz .txz .webm
    .webp .whl .xlsx .xz .zip .zst .tzst .feather .arrow .orc .avro .h5 .pdf
    """.split()
)


#: RGRID_COMPRESSION: ``auto`` (the default) compresses unless the grid is on this machine
POLICIES = ("auto", "always", "never")


def policy_from_env() -> str:
    """``RGRID_COMPRESSION``, checked (``errors.UsageError`` naming the choices)."""
    value = os.environ.get("RGRID_COMPRESSION", "").strip().lower() or "auto"
    if value not in POLICIES:
        raise errors.UsageError(
            f"RGRID_COMPRESSION must be one of {', '.join(POLICIES)}, not {value!r}"
        )
    return value


def pays_to(url: str, policy: str) -> bool:
    """Whether bodies to and from the grid at ``url`` should travel compressed: as ``policy``
    says, and with ``auto`` unless the grid's host is a loopback address (or ``localhost``):
    there the bytes never cross a network, and zstd (~200 MiB/s a core) only slows them down."""
    if policy != "auto":
        return policy == "always"
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return False
    import ipaddress

    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name: not resolved here, so taken for a remote grid


def worth_compressing(name: str, size: int) -> bool:
    """Whether a file of this name and size should travel compressed."""
    if size <= MIN_BYTES:
        return False
    dot = name.rfind(".")
    return dot < 0 or name[dot:].lower() not in ALREADY_COMPRESSED


def compressing_reader(source: IO[bytes]) -> IO[bytes]:
    """A readable stream of ``source``'s bytes compressed (for a streamed request body)."""
    import zstandard

    # the CLI uploads on the user's machine: all its cores compress (as `zstd -T0`), the same
    # standard frames as one thread makes
    compressor = zstandard.ZstdCompressor(level=LEVEL, threads=-1)
    reader: IO[bytes] = compressor.stream_reader(source, closefd=True)
    return reader


class Decompressor:
    """Decompresses a zstd stream piece by piece into ``sink`` with bounded memory.

    The output reaches ``sink`` in pieces of at most ~128 KiB as it is produced, never as one
    buffer (a small compressed body may expand enormously); more than ``size`` bytes is an
    ``IntegrityError`` at once, and ``finish`` raises one if fewer arrived (truncated).
    """

    def __init__(self, sink: Callable[[bytes], object], size: int) -> None:
        import zstandard

        self.size = size
        self.received = 0
        self._sink = sink
        self._error: type[Exception] = zstandard.ZstdError
        sink_file = cast(IO[bytes], _CountingSink(self))
        self._writer: Any = zstandard.ZstdDecompressor().stream_writer(
            sink_file, write_return_read=True
        )

    def feed(self, data: bytes) -> None:
        try:
            self._writer.write(data)
        except self._error as exc:
            raise errors.IntegrityError(f"the compressed body is corrupt: {exc}") from exc

    def finish(self) -> None:
        self._writer.flush()
        if self.received < self.size:
            raise errors.IntegrityError(
                f"the compressed body ended early (truncated): {self.received} of {self.size} bytes"
            )

    def _take(self, piece: bytes) -> None:
        self.received += len(piece)
        if self.received > self.size:
            raise errors.IntegrityError(f"the compressed body holds more than {self.size} bytes")
        self._sink(piece)


class _CountingSink:
    """The file-like object zstandard writes decompressed pieces to."""

    def __init__(self, owner: Decompressor) -> None:
        self._owner = owner

    def write(self, piece: bytes) -> int:
        self._owner._take(bytes(piece))
        return len(piece)


class Compressor:
    """Compresses a stream piece by piece (for a streamed response body)."""

    def __init__(self) -> None:
        import zstandard

        self._inner: Any = zstandard.ZstdCompressor(level=LEVEL).compressobj()

    def feed(self, data: bytes) -> bytes:
        out: bytes = self._inner.compress(data)
        return out

    def finish(self) -> bytes:
        out: bytes = self._inner.flush()
        return out
