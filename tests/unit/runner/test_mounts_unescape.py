"""Mount points as /proc/self/mountinfo writes them (octal escapes) read back."""

from __future__ import annotations

from rgrid.runner.mounts import _unescape


def test_octal_escapes_of_mountinfo_are_undone() -> None:
    assert _unescape(rb"/tmp/a\040b\011c\134d") == b"/tmp/a b\tc\\d"
    assert _unescape(b"/plain/path") == b"/plain/path"
