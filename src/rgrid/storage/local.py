"""LocalStorage: blobs as files in a directory tree on the server's own disk."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import shutil
import stat as stat_mode
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from rgrid import digests, errors
from rgrid.storage import CHUNK_SIZE, BlobInfo, Verifier, _stream, validate_key, writeback
from rgrid.storage._stream import wrap_os_errors as _wrap_errors

logger = logging.getLogger(__name__)

TMP_DIR = ".tmp"  # in-flight writes; inside root so that the final rename is atomic
META_DIR = ".meta"  # sidecars: .meta/<key>.json holds the digest verified when the blob was written
_META_SUFFIX = ".json"


class LocalStorage(_stream.FilesThroughPut, _stream.ServedByTheGrid):
    """``ObjectStorage`` on a local filesystem under ``root`` (created on first use).

    ``root/<key>`` holds a blob's bytes. It appears only by an atomic rename from ``root/.tmp`` once
    the data is complete, verified and fsynced. Its digest is kept in ``root/.meta/<key>.json``
    together with the size, inode and mtime it describes: a sidecar that no longer matches the file
    (a crash, a racing overwrite) is ignored and the digest recomputed. Blocking I/O runs in worker
    threads; no blob is ever held whole in memory.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / TMP_DIR
        self._meta = self.root / META_DIR

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _meta_path(self, key: str) -> Path:
        return self._meta / (key + _META_SUFFIX)

    async def put(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        digest: str | None = None,
        size: int | None = None,
    ) -> BlobInfo:
        """See ``ObjectStorage.put``; data is written to ``.tmp`` and renamed into place."""
        async with _stream.closing(chunks):
            path = self._path(key)
            verifier = Verifier(key, digest=digest, size=size)
            info = await self._receive(path, verifier, chunks)
        logger.debug("blob stored", extra={"action": "blob_stored", "key": key, "size": info.size})
        return info

    async def _receive(
        self, path: Path, verifier: Verifier, chunks: AsyncIterator[bytes]
    ) -> BlobInfo:
        action = f"write blob {verifier.key!r}"
        with _wrap_errors(action):
            tmp, fh = await asyncio.to_thread(self._open_temp)
        try:
            async with contextlib.aclosing(_stream.rechunk(chunks)) as pieces:
                async for data in pieces:
                    with _wrap_errors(action):
                        await asyncio.to_thread(_write, fh, verifier, data)
            info = verifier.finish()
            with _wrap_errors(action):
                await asyncio.to_thread(self._commit, info, fh, tmp, path)
        except BaseException:
            # Synchronous on purpose: it must also run when the task is being cancelled.
            _discard(fh, tmp)
            raise
        return info

    def _open_temp(self) -> tuple[Path, io.BufferedWriter]:
        self._tmp.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        return tmp, tmp.open("xb")

    def _commit(self, info: BlobInfo, fh: io.BufferedWriter, tmp: Path, path: Path) -> None:
        fh.flush()
        os.fsync(fh.fileno())
        st = os.fstat(fh.fileno())
        fh.close()
        path.parent.mkdir(parents=True, exist_ok=True)  # first: a key clash must leave no sidecar
        # The sidecar goes before the rename, so a stat() right after put() finds it matching;
        # the inode and mtime it records survive the rename.
        self._write_meta(info, st)
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def _write_meta(self, info: BlobInfo, st: os.stat_result) -> None:
        # Not fsynced: a lost or torn sidecar only costs a re-hash in stat().
        record = {
            "digest": info.digest,
            "size": st.st_size,
            "ino": st.st_ino,
            "mtime_ns": st.st_mtime_ns,
        }
        meta = self._meta_path(info.key)
        meta.parent.mkdir(parents=True, exist_ok=True)
        _stream.replace_atomically(meta, lambda tmp: tmp.write_text(json.dumps(record)))

    async def open(self, key: str, *, offset: int = 0) -> AsyncIterator[bytes]:
        """See ``ObjectStorage.open``."""
        path = self._path(key)
        async with contextlib.aclosing(
            _stream.iter_file(path, label=f"blob {key!r}", offset=offset)
        ) as chunks:
            async for chunk in chunks:
                yield chunk

    async def stat(self, key: str, *, algorithm: str = digests.DEFAULT) -> BlobInfo | None:
        """See ``ObjectStorage.stat``; re-hashes with ``algorithm`` (and rewrites the sidecar)
        if that is stale."""
        path = self._path(key)
        with _wrap_errors(f"stat blob {key!r}"):
            return await asyncio.to_thread(self._stat, key, path, algorithm)

    def _stat(self, key: str, path: Path, algorithm: str) -> BlobInfo | None:
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat_mode.S_ISREG(st.st_mode):
            return None
        digest = self._read_meta(key, st)
        if digest is not None and digests.algorithm_of(digest) == algorithm:
            return BlobInfo(key=key, size=st.st_size, digest=digest)
        # a valid record of another algorithm stays: it names the key's own address
        return self._rehash(key, path, algorithm, keep_record=digest is not None)

    def _read_meta(self, key: str, st: os.stat_result) -> str | None:
        try:
            record = json.loads(self._meta_path(key).read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        current = {"size": st.st_size, "ino": st.st_ino, "mtime_ns": st.st_mtime_ns}
        if not isinstance(record, dict) or any(record.get(k) != v for k, v in current.items()):
            return None
        digest = record.get("digest")
        if digest is None and isinstance(legacy := record.get("sha256"), str):
            digest = f"sha256:{legacy}"  # written before BLAKE3
        return digest if isinstance(digest, str) else None

    def _rehash(
        self, key: str, path: Path, algorithm: str, *, keep_record: bool = False
    ) -> BlobInfo | None:
        try:
            fh = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        with fh:
            st = os.fstat(fh.fileno())
            hasher = digests.Hasher(algorithm)
            while piece := fh.read(CHUNK_SIZE):
                hasher.update(piece)
        info = BlobInfo(key=key, size=st.st_size, digest=hasher.result())
        if not keep_record:
            self._write_meta(info, st)
        logger.info("blob re-hashed", extra={"action": "blob_rehashed", "key": key})
        return info

    async def delete(self, key: str) -> None:
        """See ``ObjectStorage.delete``. Empty parent directories are left in place."""
        path = self._path(key)
        with _wrap_errors(f"delete blob {key!r}"):
            await asyncio.to_thread(self._delete, path, self._meta_path(key))

    @staticmethod
    def _delete(path: Path, meta: Path) -> None:
        for victim in (path, meta):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
                victim.unlink()

    async def copy_to_file(self, key: str, dest: Path) -> None:
        """See ``ObjectStorage.copy_to_file``; a kernel-side ``shutil.copyfile``, never a link."""
        path = self._path(key)
        with _wrap_errors(f"copy blob {key!r} to {dest.name!r}"):
            await asyncio.to_thread(
                _stream.replace_atomically, dest, lambda tmp: _copy(key, path, tmp)
            )

    async def copy_to_files(self, blobs: Sequence[tuple[str, str, Path]]) -> list[bool]:
        """See ``ObjectStorage.copy_to_files``: a blob whose sidecar vouches for its digest is
        copied (kernel-side), all on one thread; any other is left to ``copy_to_file``."""
        for key, _, _ in blobs:
            validate_key(key)
        with _wrap_errors(f"copy {len(blobs)} blobs"):
            return await asyncio.to_thread(self._copy_all, blobs)

    def _copy_all(self, blobs: Sequence[tuple[str, str, Path]]) -> list[bool]:
        return [self._copy_vouched(key, digest, dest) for key, digest, dest in blobs]

    def _copy_vouched(self, key: str, digest: str, dest: Path) -> bool:
        path = self.root / key
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return False
        if not stat_mode.S_ISREG(st.st_mode) or self._read_meta(key, st) != digest:
            return False
        _stream.replace_atomically(dest, lambda tmp: _copy(key, path, tmp))
        return True

    async def put_file(
        self,
        key: str,
        src: Path,
        *,
        digest: str | None = None,
        move: bool = False,
        verified: bool = False,
    ) -> BlobInfo:
        """See ``ObjectStorage.put_file``; with ``move`` on the same filesystem the file is
        hashed (unless ``verified``), synced and renamed into place rather than copied."""
        if move:
            with _wrap_errors(f"write blob {key!r}"):
                moved = await asyncio.to_thread(self._adopt, key, src, digest, verified)
            if moved is not None:
                return moved
        return await super().put_file(key, src, digest=digest, move=move)

    def _adopt(self, key: str, src: Path, digest: str | None, verified: bool) -> BlobInfo | None:
        """Verify ``src`` (unless ``verified`` against ``digest``) and rename it to the blob;
        None if it lives on another filesystem."""
        path = self._path(key)
        try:
            fh = src.open("rb+")
        except FileNotFoundError as exc:
            raise errors.NotFound(f"local file {src.name!r} not found") from exc
        with fh:
            st = os.fstat(fh.fileno())
            if st.st_dev != self._device():
                return None
            if verified and digest is not None:
                info = BlobInfo(key=key, size=st.st_size, digest=digest)
            else:
                verifier = Verifier(key, digest=digest, size=None)
                while data := fh.read(CHUNK_SIZE):
                    verifier.update(data)
                info = verifier.finish()
            os.fsync(fh.fileno())
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_meta(info, os.stat(src))
        os.replace(src, path)
        _fsync_dir(path.parent)
        return info

    def _device(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        return os.stat(self.root).st_dev

    async def health(self) -> None:
        """See ``ObjectStorage.health``: creates ``root`` if needed and writes a probe file."""
        with _wrap_errors(f"use the directory {self.root.name!r}"):
            await asyncio.to_thread(self._probe)

    def _probe(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)
        probe = self._tmp / f"health-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"ok")
            if probe.read_bytes() != b"ok":
                raise errors.StorageError("storage health probe read back different bytes")
        finally:
            probe.unlink(missing_ok=True)


def _write(fh: io.BufferedWriter, verifier: Verifier, data: bytes) -> None:
    verifier.update(data)  # first, so an oversize stream fails before its excess is written
    with writeback.pushed(fh):  # the fsync in _commit then has little left to do
        fh.write(data)


def _copy(key: str, src: Path, dest: Path) -> None:
    try:
        shutil.copyfile(src, dest)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        if not src.is_file():
            raise errors.NotFound(f"blob {key!r} not found") from exc
        raise


def _discard(fh: io.BufferedWriter, tmp: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        fh.close()
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    """Persist a rename by fsyncing the directory holding the new entry (skipped if unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
