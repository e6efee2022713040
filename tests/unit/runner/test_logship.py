"""The log shipper against a fake control plane (issue 15): lines numbered from after the
earlier attempts' last line, consecutively, in the order read, stderr's tail kept; past the
byte cap nothing more is stored (no gaps) and one system line says how much was not."""

from __future__ import annotations

from tests.fake_plane import FakeControlPlane

from rgrid import domain
from rgrid.runner.logship import LogShipper


async def test_lines_are_numbered_on_from_the_earlier_attempts_and_shipped_in_order() -> None:
    plane = FakeControlPlane()
    async with LogShipper(plane, attempt=2, start_seq=7, max_bytes=1 << 20) as shipper:
        await shipper.setup("installing pyyaml")
        await shipper.on_output("stdout", [b"one\ntwo\n", b"three\n"])
        await shipper.on_output("stderr", [b"oops\n"])
        shipper.system("note")
        await shipper.on_output("stdout", [b"no newline"])

    assert plane.lines() == [
        ("setup", "installing pyyaml\n"),
        ("stdout", "one\n"),
        ("stdout", "two\n"),
        ("stdout", "three\n"),
        ("stderr", "oops\n"),
        ("system", "note\n"),
        ("stdout", "no newline"),
    ]
    assert plane.segments[0].first_seq == 8 and plane.segments[-1].last_seq == 14
    assert {segment.attempt for segment in plane.segments} == {2}
    assert shipper.last_seq == 14 and list(shipper.stderr_tail) == ["oops\n"]


async def test_past_the_cap_nothing_more_is_stored_and_a_line_says_so() -> None:
    plane = FakeControlPlane()
    async with LogShipper(plane, attempt=1, start_seq=0, max_bytes=10) as shipper:
        await shipper.on_output("stdout", [b"12345\n"])  # 6 bytes: kept
        await shipper.on_output("stdout", [b"6789ab\n", b"c\n"])  # over 10: dropped, and after

    assert plane.lines() == [
        ("stdout", "12345\n"),
        ("system", "[rgrid] log limit of 10 bytes reached: 2 lines (9 bytes) were not stored\n"),
    ]
    assert [s.stream for s in plane.segments] == [domain.Stream.STDOUT, domain.Stream.SYSTEM]
