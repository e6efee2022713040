"""S3Storage: blobs in an S3-compatible bucket under a prefix (the cluster profile's storage).

``s3://bucket/prefix``; the endpoint and credentials come from the environment as for any AWS
client (``AWS_ENDPOINT_URL``/``RGRID_S3_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, …). boto3's
client is blocking, so every call runs in a worker thread.

A put is verified before it becomes visible: small blobs are buffered (at most one part) and
sent with one ``PutObject`` once their digest and size check out; larger ones go up as a
multipart upload whose parts are sent as they arrive, and the upload is completed — the moment
the object appears — only after the whole stream was verified, else aborted. The digest is kept
in the object's metadata, so ``stat`` needs no read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from rgrid import digests, errors
from rgrid.storage import CHUNK_SIZE, BlobInfo, Verifier, validate_key
from rgrid.storage._stream import (
    FilesThroughPut,
    NoLocalFiles,
    closing,
    temp_sibling,
    wrap_os_errors,
)

#: multipart part size (S3's minimum is 5 MiB, except for the last part)
PART_SIZE = 8 * 1024 * 1024
DIGEST_META = "digest"
#: where the digest of a blob uploaded in parts is kept (keys starting with "." are ours)
META_PREFIX = ".digest/"
#: the same, for blobs stored before BLAKE3: their bare sha256 hex
LEGACY_META = "sha256"
LEGACY_PREFIX = ".sha256/"
T = TypeVar("T")

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _wrap_client_errors(action: str) -> Iterator[None]:
    """boto errors become ``errors.StorageError`` (messages without endpoint details)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise errors.StorageError(f"storage could not {action}: {code}") from exc
    except BotoCoreError as exc:
        raise errors.StorageError(f"storage could not {action}: {type(exc).__name__}") from exc


def _code(exc: BaseException) -> str:
    """The S3 error code of a botocore ``ClientError`` ("" for anything else)."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return ""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _missing(exc: Exception) -> bool:
    return _code(exc) in ("404", "NoSuchKey", "NotFound")


def _covers(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a rule read back from the bucket says everything ``wanted`` says."""
    return all(existing.get(field) == value for field, value in wanted.items())


class S3Storage(FilesThroughPut, NoLocalFiles):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        client: Any | None = None,
        part_size: int = PART_SIZE,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            endpoint = os.environ.get("RGRID_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
            self._client = boto3.client("s3", endpoint_url=endpoint or None)
        return self._client

    def _name(self, key: str) -> str:
        if not key.startswith((META_PREFIX, LEGACY_PREFIX)):
            validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    async def _call(self, action: str, function: Callable[..., T], /, **kwargs: Any) -> T:
        def run() -> T:
            with _wrap_client_errors(action):
                return function(**kwargs)

        return await asyncio.to_thread(run)

    async def put(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        digest: str | None = None,
        size: int | None = None,
    ) -> BlobInfo:
        """See ``ObjectStorage.put``."""
        name = self._name(key)
        async with closing(chunks):
            verifier = Verifier(key, digest=digest, size=size)
            buffer = bytearray()
            upload: _Multipart | None = None
            try:
                async for chunk in chunks:
                    verifier.update(chunk)
                    buffer += chunk
                    if len(buffer) >= self.part_size:
                        if upload is None:
                            upload = await _Multipart.start(self, name, key)
                        await upload.send(bytes(buffer[: self.part_size]))
                        del buffer[: self.part_size]
                info = verifier.finish()
                if upload is None:
                    await self._call(
                        f"write blob {key!r}",
                        self.client.put_object,
                        Bucket=self.bucket,
                        Key=name,
                        Body=bytes(buffer),
                        Metadata={DIGEST_META: info.digest},
                    )
                else:
                    if buffer:
                        await upload.send(bytes(buffer))
                    await upload.complete(info.digest)
                    upload = None
                return info
            finally:
                if upload is not None:  # failed, rejected or cancelled: nothing appears
                    await asyncio.shield(upload.abort())

    async def open(self, key: str, *, offset: int = 0) -> AsyncIterator[bytes]:
        """See ``ObjectStorage.open``."""
        name = self._name(key)
        if offset < 0:
            raise errors.InvalidRequest(f"offset must be >= 0, got {offset}")
        info = await self.stat(key)
        if info is None:
            raise errors.NotFound(f"blob {key!r} not found")
        if offset >= info.size:
            return
        body = await self._call(
            f"read blob {key!r}",
            self.client.get_object,
            Bucket=self.bucket,
            Key=name,
            Range=f"bytes={offset}-",
        )
        stream = body["Body"]
        try:
            while True:
                chunk = await asyncio.to_thread(stream.read, CHUNK_SIZE)
                if not chunk:
                    return
                yield chunk
        finally:
            stream.close()

    async def stat(
        self,
        key: str,
        *,
        algorithm: str = digests.DEFAULT,  # noqa: ARG002 (every object carries its digest)
    ) -> BlobInfo | None:
        """See ``ObjectStorage.stat``."""
        name = self._name(key)

        def head() -> dict[str, Any] | None:
            try:
                with _wrap_client_errors(f"read blob {key!r}"):
                    result: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=name)
                    return result
            except errors.StorageError as exc:
                if exc.__cause__ is not None and _missing(exc.__cause__):  # type: ignore[arg-type]
                    return None
                raise

        found = await asyncio.to_thread(head)
        if found is None:
            return None
        metadata = found["Metadata"]
        if DIGEST_META in metadata:
            digest = metadata[DIGEST_META]
        elif LEGACY_META in metadata:
            digest = f"sha256:{metadata[LEGACY_META]}"
        else:  # uploaded in parts: its hash is in the sidecar
            digest = await self._sidecar(key)
        return BlobInfo(key, int(found["ContentLength"]), digest)

    async def _sidecar(self, key: str) -> str:
        """The digest in the blob's sidecar object (a bare sha256 hex in a legacy one)."""
        for prefix, algorithm in ((META_PREFIX, ""), (LEGACY_PREFIX, "sha256:")):
            try:
                sidecar = await self._call(
                    f"read blob {key!r}",
                    self.client.get_object,
                    Bucket=self.bucket,
                    Key=self._name(prefix + key),
                )
            except errors.StorageError as exc:
                cause = exc.__cause__
                if prefix == LEGACY_PREFIX or cause is None or not _missing(cause):  # type: ignore[arg-type]
                    raise
                continue
            stored: bytes = await asyncio.to_thread(sidecar["Body"].read)
            return algorithm + stored.decode()
        raise AssertionError("unreachable")

    async def _drop_sidecars(self, key: str, action: str) -> None:
        for prefix in (META_PREFIX, LEGACY_PREFIX):
            await self._call(
                f"{action} blob {key!r}",
                self.client.delete_object,
                Bucket=self.bucket,
                Key=self._name(prefix + key),
            )

    async def delete(self, key: str) -> None:
        """See ``ObjectStorage.delete``."""
        name = self._name(key)
        await self._call(
            f"delete blob {key!r}", self.client.delete_object, Bucket=self.bucket, Key=name
        )
        await self._drop_sidecars(key, "delete")

    async def copy_to_file(self, key: str, dest: Path) -> None:
        """See ``ObjectStorage.copy_to_file``."""
        chunks = self.open(key)
        first = await anext(chunks, None)  # NotFound here, before any file exists
        tmp = temp_sibling(dest)
        with wrap_os_errors(f"write {dest.name}"):
            try:
                handle = await asyncio.to_thread(tmp.open, "wb")
                try:
                    if first:
                        await asyncio.to_thread(handle.write, first)
                    async for chunk in chunks:
                        await asyncio.to_thread(handle.write, chunk)
                finally:
                    handle.close()
                os.replace(tmp, dest)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

    async def download_url(self, key: str, expires_s: int) -> str | None:
        """See ``ObjectStorage.download_url``: a presigned GET."""
        name = self._name(key)
        url: str = await self._call(
            f"sign a download of {key!r}",
            self.client.generate_presigned_url,
            ClientMethod="get_object",
            Params={"Bucket": self.bucket, "Key": name},
            ExpiresIn=expires_s,
        )
        return url

    async def expire_unwritten(self, days: int) -> bool:
        """See ``ObjectStorage.expire_unwritten``: one lifecycle rule for the prefix, merged into
        the bucket's configuration (other rules are kept; ours is replaced, never doubled)."""
        rule = {
            "ID": f"rgrid-expiry:{self.prefix or '(bucket)'}",
            "Filter": {"Prefix": f"{self.prefix}/" if self.prefix else ""},
            "Status": "Enabled",
            "Expiration": {"Days": days},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }

        def install() -> None:
            try:
                rules = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]
            except Exception as exc:
                if _code(exc) != "NoSuchLifecycleConfiguration":
                    raise
                rules = []
            if any(r.get("ID") == rule["ID"] and _covers(r, rule) for r in rules):
                return
            others = [r for r in rules if r.get("ID") != rule["ID"]]
            self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": [*others, rule]}
            )

        try:
            await self._call("set the bucket's lifecycle rule", install)
        except errors.StorageError as exc:
            # a grid whose credentials may not touch the bucket's configuration still runs
            logger.warning(
                "%s; the janitor alone expires blobs", exc, extra={"action": "lifecycle_unset"}
            )
            return False
        return True

    async def rewrite(self, key: str) -> None:
        """See ``ObjectStorage.rewrite``: copied onto itself (in parts past 5 GiB), the digest
        moved into the object's metadata, so its sidecar, if any, goes."""
        info = await self.stat(key)
        if info is None:
            return
        name = self._name(key)
        await self._call(
            f"rewrite blob {key!r}",
            self.client.copy,
            CopySource={"Bucket": self.bucket, "Key": name},
            Bucket=self.bucket,
            Key=name,
            ExtraArgs={"Metadata": {DIGEST_META: info.digest}, "MetadataDirective": "REPLACE"},
        )
        await self._drop_sidecars(key, "rewrite")

    async def health(self) -> None:
        """See ``ObjectStorage.health``: the bucket answers a read, and takes (and gives up) a
        small object, so a bucket the grid cannot write to stops it at start, not at the first
        upload."""
        await self._call(
            "reach the bucket",
            self.client.list_objects_v2,
            Bucket=self.bucket,
            Prefix=self.prefix,
            MaxKeys=1,
        )
        probe = f"{self.prefix}/.rgrid-write-check" if self.prefix else ".rgrid-write-check"
        await self._call(
            "write to the bucket", self.client.put_object, Bucket=self.bucket, Key=probe, Body=b""
        )
        await self._call(
            "delete from the bucket", self.client.delete_object, Bucket=self.bucket, Key=probe
        )


class _Multipart:
    """One multipart upload in progress."""

    def __init__(self, storage: S3Storage, name: str, key: str, upload_id: str) -> None:
        self._storage, self._name, self._key, self._id = storage, name, key, upload_id
        self._parts: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, storage: S3Storage, name: str, key: str) -> _Multipart:
        created = await storage._call(
            f"write blob {key!r}",
            storage.client.create_multipart_upload,
            Bucket=storage.bucket,
            Key=name,
        )
        return cls(storage, name, key, created["UploadId"])

    async def send(self, data: bytes) -> None:
        number = len(self._parts) + 1
        sent = await self._storage._call(
            f"write blob {self._key!r}",
            self._storage.client.upload_part,
            Bucket=self._storage.bucket,
            Key=self._name,
            UploadId=self._id,
            PartNumber=number,
            Body=data,
        )
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    async def complete(self, digest: str) -> None:
        # A multipart object takes its metadata when the upload starts, before the hash is
        # known: the verified hash goes into a small sidecar object first, then the blob appears.
        await self._storage._call(
            f"write blob {self._key!r}",
            self._storage.client.put_object,
            Bucket=self._storage.bucket,
            Key=self._storage._name(META_PREFIX + self._key),
            Body=digest.encode(),
        )
        await self._storage._call(
            f"write blob {self._key!r}",
            self._storage.client.complete_multipart_upload,
            Bucket=self._storage.bucket,
            Key=self._name,
            UploadId=self._id,
            MultipartUpload={"Parts": self._parts},
        )

    async def abort(self) -> None:
        with contextlib.suppress(errors.StorageError):
            await self._storage._call(
                f"abandon blob {self._key!r}",
                self._storage.client.abort_multipart_upload,
                Bucket=self._storage.bucket,
                Key=self._name,
                UploadId=self._id,
            )
