"""Rules for requirement lines, checked by the CLI before upload and by the grid on submit."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from rgrid import errors

MAX_REQUIREMENTS_BYTES = 1024**2
_INDEX_OPTION = re.compile(r"^(--index-url|--extra-index-url|-i)(?:\s+|=)(?P<url>\S+)$")
_LOCAL_PATH = re.compile(r"^(\.|/|~|file:)|\s@\s*file:")


def check_requirements(
    lines: Sequence[str], allowed_index_hosts: Sequence[str] | None
) -> list[str]:
    """Normalised requirement lines (comments and blanks dropped), or ``InvalidRequest``.

    Refused: local paths and editable installs (the worker has no such path), other pip options,
    index URLs whose host the grid does not allow (``RGRID_ALLOWED_INDEX_HOSTS``; ``None``
    skips that check, for the CLI, which does not know the grid's setting), over 1 MB.
    """
    if sum(len(line) + 1 for line in lines) > MAX_REQUIREMENTS_BYTES:
        raise errors.PayloadTooLarge("the requirements are over 1 MB")
    kept: list[str] = []
    for raw in lines:
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.startswith(("-e", "--editable")) or _LOCAL_PATH.search(line):
            raise errors.InvalidRequest(
                f"requirement {line!r} points at a local path or an editable install",
                hint="the worker has no such path: publish the package, or bundle the code "
                "beside the script (sibling modules and packages are sent automatically)",
            )
        index = _INDEX_OPTION.match(line)
        if index is not None and allowed_index_hosts is not None:
            host = urlsplit(index.group("url")).hostname or ""
            if host not in allowed_index_hosts:
                raise errors.InvalidRequest(
                    f"index host {host!r} is not allowed on this grid (RGRID_ALLOWED_INDEX_HOSTS)",
                    hint="the grid's operator can allow it in RGRID_ALLOWED_INDEX_HOSTS",
                )
        elif index is None and line.startswith("-"):
            raise errors.InvalidRequest(f"requirement option {line.split()[0]!r} is not supported")
        kept.append(line)
    return kept
