"""The line splitter and the output pumps (over real OS pipes, no child process)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from rgrid.sandbox import lines
from rgrid.sandbox.lines import MAX_LINE_BYTES, LineSplitter, OutputPumps, block_lines


def split(*chunks: bytes, max_bytes: int = MAX_LINE_BYTES) -> list[bytes]:
    """The lines (and pieces) the splitter's blocks hold, in order."""
    splitter = LineSplitter(max_bytes)
    blocks = [block for chunk in chunks for block in splitter.feed(chunk)] + splitter.flush()
    return [line for block in blocks for line in block_lines(block)]


def test_lines_keep_their_newline() -> None:
    assert split(b"a\nbb\n\nccc\n") == [b"a\n", b"bb\n", b"\n", b"ccc\n"]


def test_lines_are_joined_across_chunks() -> None:
    assert split(b"he", b"llo\nwo", b"rld\n") == [b"hello\n", b"world\n"]


def test_partial_last_line_is_delivered_at_eof() -> None:
    assert split(b"one\ntwo") == [b"one\n", b"two"]
    assert split(b"") == []


def test_feed_keeps_partial_line_until_more_arrives() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"abc") == []
    assert splitter.feed(b"\nd") == [b"abc\n"]
    assert splitter.flush() == [b"d"]
    assert splitter.flush() == []


def test_common_lines_come_as_one_block_per_read() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"1\n2\n3\n4") == [b"1\n2\n3\n"]
    assert splitter.feed(b"\n") == [b"4\n"]


def test_crlf_is_kept_as_is() -> None:
    assert split(b"a\r\nb\r\n", b"c\r") == [b"a\r\n", b"b\r\n", b"c\r"]


def test_invalid_utf8_passes_through() -> None:
    data = b"\xff\xfe caf\xc3\n\x80\x00\n"
    assert split(data) == [b"\xff\xfe caf\xc3\n", b"\x80\x00\n"]


def test_long_line_is_cut_into_64_kib_pieces() -> None:
    line = bytes(range(256)).replace(b"\n", b"-") * 800 + b"\n"  # 200 KiB and a newline
    pieces = split(line)
    assert [len(piece) for piece in pieces] == [65536, 65536, 65536, 8193]
    assert b"".join(pieces) == line


def test_long_line_fed_in_small_chunks_is_cut_the_same() -> None:
    line = b"x" * (3 * MAX_LINE_BYTES + 10)
    chunks = [line[i : i + 1000] for i in range(0, len(line), 1000)]
    pieces = split(*chunks, b"\nnext\n")
    assert [len(piece) for piece in pieces] == [MAX_LINE_BYTES] * 3 + [11, 5]
    assert b"".join(pieces) == line + b"\nnext\n"


def test_line_of_exactly_the_limit_then_newline() -> None:
    assert split(b"abcd\n", max_bytes=4) == [b"abcd", b"\n"]
    assert split(b"abc\n", max_bytes=4) == [b"abc\n"]


def test_no_piece_is_longer_than_the_limit() -> None:
    data = b"12345678901\n123\n1234567\n"
    pieces = split(data, max_bytes=4)
    assert all(len(piece) <= 4 for piece in pieces)
    assert b"".join(pieces) == data


async def test_pumps_deliver_each_stream_in_order() -> None:
    received: list[tuple[str, bytes]] = []

    async def on_output(stream: str, batch: list[bytes]) -> None:
        received.extend((stream, line) for block in batch for line in block_lines(block))

    pumps = OutputPumps(on_output, on_error=lambda: None)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pumps.start({"stdout": os.fdopen(out_r, "rb"), "stderr": os.fdopen(err_r, "rb")})
    os.write(out_w, b"1\n2\n3")
    os.write(err_w, b"e\n")
    os.close(out_w)
    os.close(err_w)
    await pumps.drain()
    assert [d for s, d in received if s == "stdout"] == [b"1\n", b"2\n", b"3"]
    assert [d for s, d in received if s == "stderr"] == [b"e\n"]


async def test_drain_stops_waiting_for_a_pipe_held_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lines, "DRAIN_GRACE_S", 0.2)
    received: list[bytes] = []

    async def on_output(stream: str, batch: list[bytes]) -> None:
        received.extend(line for block in batch for line in block_lines(block))

    pumps = OutputPumps(on_output, on_error=lambda: None)
    read_fd, write_fd = os.pipe()  # like a grandchild that escaped the kill and keeps stdout
    pumps.start({"stdout": os.fdopen(read_fd, "rb")})
    os.write(write_fd, b"kept\npartial")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await pumps.drain()
    os.close(write_fd)
    assert loop.time() - started < 2
    assert received == [b"kept\n", b"partial"]


async def test_callback_error_calls_on_error_and_is_raised() -> None:
    errors: list[str] = []

    async def on_output(stream: str, batch: list[bytes]) -> None:
        raise RuntimeError("callback broke")

    pumps = OutputPumps(on_output, on_error=lambda: errors.append("killed"))
    read_fd, write_fd = os.pipe()
    pumps.start({"stdout": os.fdopen(read_fd, "rb")})
    os.write(write_fd, b"line\n")
    os.close(write_fd)
    with pytest.raises(RuntimeError, match="callback broke"):
        await pumps.drain()
    assert errors == ["killed"]


async def test_a_read_waits_for_the_delivery_of_earlier_reads_of_the_other_pipe() -> None:
    """stdout read while the callback is still busy with an earlier stdout read is delivered
    before stderr read after it: the order is the order of the reads, not of the callbacks."""
    received: list[bytes] = []
    first_call = asyncio.Event()

    async def on_output(stream: str, batch: list[bytes]) -> None:
        received.extend(line for block in batch for line in block_lines(block))
        if not first_call.is_set():
            first_call.set()
            await asyncio.sleep(0.3)  # a slow log flush

    pumps = OutputPumps(on_output, on_error=lambda: None)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pumps.start({"stdout": os.fdopen(out_r, "rb"), "stderr": os.fdopen(err_r, "rb")})
    os.write(out_w, b"o1\n")
    await first_call.wait()
    os.write(out_w, b"o2\n")
    await asyncio.sleep(0.05)
    os.write(err_w, b"e1\n")
    os.close(out_w)
    os.close(err_w)
    await pumps.drain()
    assert received == [b"o1\n", b"o2\n", b"e1\n"]


async def test_a_slow_callback_stops_the_reading_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lines, "MAX_QUEUED_BYTES", 64 * 1024)
    received: list[bytes] = []

    async def on_output(stream: str, batch: list[bytes]) -> None:
        received.extend(batch)
        await asyncio.sleep(0.001)

    pumps = OutputPumps(on_output, on_error=lambda: None)
    read_fd, write_fd = os.pipe()
    pumps.start({"stdout": os.fdopen(read_fd, "rb")})
    data = b"".join(b"%07d\n" % i for i in range(200_000))  # 1.6 MB, many times the limit
    writer = asyncio.get_running_loop().run_in_executor(None, _write_all, write_fd, data)
    await writer
    await pumps.drain()
    assert b"".join(received) == data


def _write_all(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as pipe:
        pipe.write(data)


INTERLEAVING = """\
import sys, time
for i in range(10):
    print(f"o{i}", flush=True)
    time.sleep(0.02)
    print(f"e{i}", file=sys.stderr, flush=True)
    time.sleep(0.02)
"""


async def test_the_order_of_two_streams_survives_an_event_loop_busy_elsewhere() -> None:
    """A grid's loop may be busy with other runs for a while; lines the script wrote 20 ms
    apart on stdout and stderr must still come out in the order it wrote them."""
    received: list[bytes] = []

    async def on_output(stream: str, batch: list[bytes]) -> None:
        received.extend(line for block in batch for line in block_lines(block))

    child = subprocess.Popen(
        [sys.executable, "-c", INTERLEAVING], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert child.stdout is not None and child.stderr is not None
    pumps = OutputPumps(on_output, on_error=lambda: None)
    pumps.start({"stdout": child.stdout, "stderr": child.stderr})
    time.sleep(1.0)  # the loop blocked (a slow synchronous step) while the script writes
    await asyncio.get_running_loop().run_in_executor(None, child.wait)
    await pumps.drain()
    assert received == [line for i in range(10) for line in (b"o%d\n" % i, b"e%d\n" % i)]


async def test_stopping_after_the_reader_ended_writes_to_no_reused_descriptor() -> None:
    """The reader's wake-up pipe is closed when its pipes end; a descriptor opened after that
    may get its number. Stopping then must not write there (a CI run had an "x" written into
    the next run's script as it was staged)."""
    received: list[bytes] = []

    async def on_output(stream: str, batch: list[bytes]) -> None:
        received.extend(batch)

    pumps = OutputPumps(on_output, on_error=lambda: None)
    read_fd, write_fd = os.pipe()
    pumps.start({"stdout": os.fdopen(read_fd, "rb")})
    os.write(write_fd, b"last\n")
    os.close(write_fd)
    reader = pumps._reader
    assert reader is not None
    await asyncio.get_running_loop().run_in_executor(None, reader._thread.join, 10)
    assert not reader._thread.is_alive()
    opened: list[int] = []
    try:
        while reader._wake_write not in opened[1::2]:  # a new pipe's write end gets its number
            opened += os.pipe()
            assert len(opened) < 64
        later_read = opened[opened.index(reader._wake_write) - 1]
        await pumps.drain()  # stops the reader
        os.set_blocking(later_read, False)
        with pytest.raises(BlockingIOError):
            os.read(later_read, 16)  # nothing was written into it
    finally:
        for fd in opened:
            os.close(fd)
    assert received == [b"last\n"]
