"""The read observer's event parsing and how it classifies what a run did to a file."""

from __future__ import annotations

import struct

from rgrid import domain
from rgrid.sandbox import reads


class _Observer:
    def __init__(self, complete: bool = True) -> None:
        self.complete = complete

    def release(self, watch: reads.Watch) -> bool:
        return self.complete


def event(mask: int, handle_type: int, handle: bytes) -> bytes:
    """One event as the kernel lays it out in file-handle mode."""
    info = struct.pack("=BBH", reads.FAN_EVENT_INFO_TYPE_FID, 0, 4 + 8 + 8 + len(handle))
    info += b"\0" * 8 + struct.pack("=Ii", len(handle), handle_type) + handle
    header = struct.pack("=IBBHQii", 24 + len(info), 3, 0, 24, mask, -1, 42)
    return header + info


def test_the_handle_is_found_in_the_information_records() -> None:
    data = event(reads.FAN_OPEN, 1, b"\x01\x02\x03\x04\x05\x06\x07\x08")
    assert reads._handle_of(data, 24, len(data)) == struct.pack("=i", 1) + bytes(range(1, 9))
    assert reads._handle_of(data[:24], 24, 24) is None


def test_read_only_opens_and_unclosed_ones_are_reads_write_opens_are_writes() -> None:
    handles = {b"a": ["a.txt"], b"b": ["b.txt", "copy-of-b.txt"], b"c": ["c.txt"], b"d": ["d"]}
    watch = reads.Watch(_Observer(), handles, dev=1)  # type: ignore[arg-type]
    watch.note(b"a", reads.FAN_OPEN | reads.FAN_CLOSE_NOWRITE)
    watch.note(b"b", reads.FAN_OPEN)  # still open when the run ended
    watch.note(b"c", reads.FAN_OPEN | reads.FAN_CLOSE_WRITE)
    watch.note(b"d", reads.FAN_OPEN | reads.FAN_CLOSE_WRITE)
    watch.note(b"d", reads.FAN_CLOSE_NOWRITE)  # written, then read back
    watch.note(b"elsewhere", reads.FAN_CLOSE_NOWRITE)
    assert watch.finish() == domain.InputReads(
        read=("a.txt", "b.txt", "copy-of-b.txt", "d"), written=("c.txt",)
    )


def test_a_watch_that_may_have_lost_events_reports_nothing() -> None:
    watch = reads.Watch(_Observer(complete=False), {}, dev=1)  # type: ignore[arg-type]
    assert watch.finish() is None
