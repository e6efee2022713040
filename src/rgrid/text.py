"""Text a tenant controls, made safe to show on a terminal: control characters escaped."""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

#: C0 controls, DEL and C1 controls (Unicode category Cc): a terminal acts on them (ESC starts
#: a sequence that can retitle the window or move the cursor, CR and LF forge lines), so they
#: are shown as ``\n``, ``\r``, ``\t`` or ``\xNN`` instead.
_ESCAPES = str.maketrans(
    {code: _NAMED.get(chr(code), f"\\x{code:02x}") for code in (*range(0x20), *range(0x7F, 0xA0))}
)


def printable(text: str) -> str:
    """``text`` with every control character escaped (everything else, backslashes included,
    unchanged): one line, and nothing a terminal would interpret."""
    return text.translate(_ESCAPES)
