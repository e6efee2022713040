"""The CLI's hash cache: a file whose size, mtime, ctime and inode have not changed since it was
hashed is not read again (re-sending an unchanged tree costs a ``stat`` a file).

One file a project directory, ``~/.rgrid/hashes/<BLAKE3 of its absolute path>.blake3.marshal``
(named for the algorithm it holds: a cache of another algorithm's addresses is never read),
keyed by absolute path, in ``marshal``'s format (it loads several times faster than JSON: a tree
of thousands of files is looked up on every run). Best effort: an unreadable or corrupt cache is
ignored and rewritten.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import time
from pathlib import Path

from rgrid import digests, errors

HASH_CHUNK = 1024 * 1024
#: a file changed this recently may still change within its timestamp's granularity (coarse on
#: some file systems): its hash is used but not remembered, so the next run hashes it again
RACY_S = 2.0
UNREADABLE_HINT = "rgrid uploads file arguments: make the file readable, or pass another one"

Entry = tuple[int, int, int, int, str]  # size, mtime_ns, ctime_ns, inode, digest


def digest_file(path: Path) -> str:
    """The file's content address (``digests.DEFAULT``); ``UsageError`` if it cannot be read."""
    try:
        return digests.of_file(path, chunk=HASH_CHUNK)
    except OSError as exc:
        raise errors.UsageError(
            f"cannot read {path}: {exc.strerror or exc}", hint=UNREADABLE_HINT
        ) from exc


def default_location(project: Path) -> Path:
    from rgrid.client.config import rgrid_dir

    folder = rgrid_dir() / "hashes"
    name = digests.hex_of(digests.of_bytes(os.fsencode(project)))[:24]
    location = folder / f"{name}.{digests.DEFAULT}.marshal"
    if not location.exists():
        _adopt_earlier(folder, project, location)
    return location


def _adopt_earlier(folder: Path, project: Path, location: Path) -> None:
    """The cache an earlier version kept for ``project`` under the SHA-256 of its path, moved
    to ``location`` (named by BLAKE3 now: no OpenSSL ``hashlib`` to load on every run)."""
    import hashlib

    name = hashlib.sha256(os.fsencode(project)).hexdigest()[:24]
    with contextlib.suppress(OSError):
        os.replace(folder / f"{name}.{digests.DEFAULT}.marshal", location)


class HashCache:
    """digest of files by (path, size, mtime_ns, ctime_ns, inode); ``hashed`` counts the files
    actually read, ``hits`` those answered from the cache."""

    def __init__(self, location: Path | None) -> None:
        self._location = location
        self._old: dict[str, Entry] = self._load() if location else {}
        self._seen: dict[str, Entry] = {}
        self.hashed = 0
        self.hits = 0

    def _load(self) -> dict[str, Entry]:
        assert self._location is not None
        try:
            data = marshal.loads(self._location.read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            return {}
        return data if isinstance(data, dict) else {}

    def digest(self, path: Path | str, info: os.stat_result | None = None) -> str:
        """The file's digest (``info``: its ``stat``, when the caller has it already)."""
        absolute = path if isinstance(path, str) and path[:1] == "/" else os.path.abspath(path)
        info = info or os.stat(absolute)
        key = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
        old = self._old.get(absolute)
        if type(old) is tuple and old[:4] == key:
            self.hits += 1
            self._seen[absolute] = old
            return old[4]
        sha = digest_file(Path(absolute))
        self.hashed += 1
        if time.time_ns() - info.st_mtime_ns > RACY_S * 1e9:
            self._seen[absolute] = (*key, sha)
        return sha

    def known(self, path: str, info: os.stat_result) -> str | None:
        """The digest of absolute ``path`` if the cache holds it for this ``stat``, else None
        (``digest`` then reads it). The tree walk asks this for thousands of files a run."""
        old = self._old.get(path)
        if type(old) is tuple and old[:4] == (
            info.st_size,
            info.st_mtime_ns,
            info.st_ctime_ns,
            info.st_ino,
        ):
            self.hits += 1
            self._seen[path] = old
            return old[4]
        return None

    def save(self) -> None:
        """Remember what this run saw (entries of files it did not look at are dropped)."""
        if self._location is None or self._seen == self._old:
            return
        try:
            self._location.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self._location.with_name(f".{self._location.name}.{os.getpid()}")
            tmp.write_bytes(marshal.dumps(self._seen))
            os.replace(tmp, self._location)
        except OSError:
            pass  # a cache that cannot be written costs hashing next time, nothing else
