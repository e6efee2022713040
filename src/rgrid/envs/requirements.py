"""Rules for requirement lines, checked by the CLI before upload and by the grid on submit.

Every line is parsed with ``packaging`` (PEP 508) and handed to uv in that parser's canonical
spelling, so uv never reads a line differently from the check. Direct references (``name @
url``, ``file:``, VCS, local paths) are refused unless an https URL to an allowed index host:
building from an arbitrary source tree is how a requirement would reach the grid's files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rgrid import errors

if TYPE_CHECKING:
    from packaging.requirements import Requirement

MAX_REQUIREMENTS_BYTES = 1024**2
_COMMENT = re.compile(r"(^|\s)#.*$")
_INDEX_OPTION = re.compile(r"^(--index-url|--extra-index-url|-i)(?:\s+|\s*=\s*)(?P<url>\S+)$")
#: the only per-requirement option kept (pip's and uv's hash-checking mode)
_HASH_OPTION = re.compile(
    r"\s+--hash[=\s]\s*(?P<hash>(?:sha256|sha384|sha512):[0-9a-fA-F]+)(?=\s|$)"
)
#: an https URL with a plain host name: no user info, no escapes or backslashes in the host,
#: nothing two URL parsers could read as different hosts
_HTTPS_URL = re.compile(
    r"^https://(?P<host>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)(?::[0-9]{1,5})?"
    r"(?P<rest>[/?#][\x21-\x7e]*)?$",
    re.IGNORECASE,
)
#: names uv's requirement reader takes for archive files beside the requirements file
_ARCHIVE_SUFFIXES = (".whl", ".zip", ".tar", ".tgz", ".tbz", ".txz", ".tlz", ".gz", ".bz2", ".xz")
_HINT = (
    "name the package as published on the package index (a version range is fine); direct "
    "references are accepted only as https URLs to the grid's allowed index hosts "
    "(RGRID_ALLOWED_INDEX_HOSTS), and local code travels beside the script (sibling modules and "
    "packages are sent automatically)"
)


def check_requirements(
    lines: Sequence[str], allowed_index_hosts: Sequence[str] | None
) -> list[str]:
    """Normalised requirement lines (comments and blanks dropped), or ``InvalidRequest``.

    Kept: PEP 508 requirements (extras, versions, markers), ``--hash`` options, and
    ``--index-url`` / ``--extra-index-url`` / ``-i`` lines. Refused: editable installs, local
    paths, direct references other than https URLs to allowed hosts, every other pip option,
    line continuations and ``${VAR}`` expansion, over 1 MB. ``allowed_index_hosts`` is
    ``RGRID_ALLOWED_INDEX_HOSTS``; ``None`` (the CLI, which does not know the grid's setting)
    skips only the host check.
    """
    if sum(len(line) + 1 for line in lines) > MAX_REQUIREMENTS_BYTES:
        raise errors.PayloadTooLarge("the requirements are over 1 MB")
    kept: list[str] = []
    for raw in lines:
        line = _COMMENT.sub("", raw).strip()
        if line:
            kept.append(_check_line(line, allowed_index_hosts))
    return kept


def _check_line(line: str, hosts: Sequence[str] | None) -> str:
    if line.endswith("\\") or "${" in line:
        raise errors.InvalidRequest(
            f"requirement {line!r} uses a line continuation or a ${{VAR}} expansion",
            hint="write each requirement on one line, literally",
        )
    if line.startswith("-"):
        return _check_option(line, hosts)
    hashes = [match.group("hash") for match in _HASH_OPTION.finditer(line)]
    text = _HASH_OPTION.sub("", line)
    requirement = _parse(text)
    if requirement.url is not None:
        why = _url_problem(requirement.url, hosts)
        if why is not None:
            raise errors.InvalidRequest(f"requirement {line!r} {why}", hint=_HINT)
    elif requirement.name.lower().endswith(_ARCHIVE_SUFFIXES):
        raise errors.InvalidRequest(
            f"requirement {line!r} names an archive file (a local path)", hint=_HINT
        )
    return " ".join([str(requirement), *(f"--hash={value}" for value in hashes)])


def _parse(text: str) -> Requirement:
    # imported here: `rgrid --help` must not pay for it
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "unparsable"
        raise errors.InvalidRequest(
            f"requirement {text!r} {_unparsable(text)} ({reason})", hint=_HINT
        ) from None


def _unparsable(text: str) -> str:
    """What a line that is not PEP 508 most likely is, for the message."""
    lowered = text.lower()
    if lowered.startswith((".", "/", "~", "file:")) or "\\" in text:
        return "points at a local path"
    if "://" in lowered or lowered.startswith(("git+", "hg+", "svn+", "bzr+")):
        return "is a bare URL (write `name @ https://…`)"
    if re.search(r"\s-", text):
        return "carries an option (options inside a requirement line are not supported)"
    return "is not a valid requirement"


def _url_problem(url: str, hosts: Sequence[str] | None) -> str | None:
    """Why the direct reference ``url`` is refused, or None if it is allowed."""
    lowered = url.lower()
    if lowered.startswith("file:") or lowered.startswith((".", "/", "~")):
        return "points at a local path (a file: URL)"
    if not lowered.startswith("https://"):
        scheme = lowered.split(":", 1)[0] if ":" in lowered else "no scheme"
        return f"is a direct reference by {scheme!r}; only https URLs are accepted"
    match = _HTTPS_URL.match(url)
    if match is None or "\\" in url:
        return (
            "has an https URL whose host cannot be checked (user info, escapes or odd characters)"
        )
    host = match.group("host").lower()
    if hosts is not None and host not in {allowed.lower() for allowed in hosts}:
        return f"is a URL to {host!r}, which this grid does not allow (RGRID_ALLOWED_INDEX_HOSTS)"
    return None


def _check_option(line: str, hosts: Sequence[str] | None) -> str:
    if line.startswith(("-e", "--editable")):
        raise errors.InvalidRequest(
            f"requirement {line!r} is an editable install (a local path)", hint=_HINT
        )
    index = _INDEX_OPTION.match(line)
    if index is None:
        raise errors.InvalidRequest(
            f"requirement option {line.split()[0]!r} is not supported",
            hint="only --index-url, --extra-index-url and -i (to allowed hosts) and --hash are",
        )
    url = index.group("url")
    match = _HTTPS_URL.match(url)
    if match is None or not url.lower().startswith("https://"):
        raise errors.InvalidRequest(
            f"index URL {url!r} is not a plain https URL", hint="use https://host/simple"
        )
    host = match.group("host").lower()
    if hosts is not None and host not in {allowed.lower() for allowed in hosts}:
        raise errors.InvalidRequest(
            f"index host {host!r} is not allowed on this grid (RGRID_ALLOWED_INDEX_HOSTS)",
            hint="the grid's operator can allow it in RGRID_ALLOWED_INDEX_HOSTS",
        )
    return f"{index.group(1)} {url}"
