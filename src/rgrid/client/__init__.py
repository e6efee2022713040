"""The synchronous client of the grid API: one method per endpoint; errors rebuilt from the envelope."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar, cast
from urllib.parse import quote, urlencode, urlsplit

from rgrid import compression, digests, errors, schemas
from rgrid.client.http import (
    CHUNK,
    DEFAULT_TIMEOUT_S,
    Incoming,
    Response,
    Transport,
    TransportError,
)
from rgrid.paths import join_under

T = TypeVar("T")

RETRIES = 5
# 1 + 2 + 4 + 8 s between the 5 tries: a grid restarting within ~15 s loses no command (a
# restart took over 7 s, the window before, on this busy 2-core machine)
RETRY_BASE_S = 1.0
RETRY_MAX_S = 8.0
RETRY_STATUSES = frozenset({502, 503, 504})
#: uploads bigger than this resume where they stopped instead of starting over
RESUMABLE_BYTES = 8 * 1024 * 1024
#: bytes a second a grid is assumed to store at least, once it holds an upload: it answers only
#: after the blob is in its storage (to S3 that is a second transfer), so a big upload's answer
#: is waited for this much longer than a small one's (1 GiB: 30 + 64 s)
STORE_BYTES_PER_S = 16 * 1024 * 1024
#: answers by which the grid sends a download straight to storage
REDIRECTS = frozenset({302, 303, 307})


class Client:
    """Talks to one grid with one API key."""

    def __init__(
        self, base_url: str, api_key: str | None, compression_policy: str | None = None
    ) -> None:
        """``compression_policy``: auto, always or never (default: ``RGRID_COMPRESSION``)."""
        self.base_url = base_url.rstrip("/")
        self._http = Transport(self.base_url)
        self.compression_policy = compression_policy or compression.policy_from_env()
        #: whether bodies over 1 MiB travel compressed (not to a grid on this machine, by default)
        self.compresses = compression.pays_to(self.base_url, self.compression_policy)
        if api_key:
            self._http.headers["authorization"] = f"Bearer {api_key}"
        #: called with (attempt, total) before a retry, to tell the user
        self.on_retry: Callable[[int, int], None] | None = None
        #: told how a transfer advances: ("uploading"|"downloading", name, bytes done, total)
        self.on_progress: Callable[[str, str, int, int], None] | None = None

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool = True,
        body: Callable[[], IO[bytes]] | None = None,
        **kw: Any,
    ) -> Response:
        """Send, retrying idempotent requests on connection errors and 502/503/504."""
        for attempt in range(1, RETRIES + 1):
            stream = body() if body is not None else None  # a fresh stream for every attempt
            try:
                response = self._http.request(method, path, body=stream, **kw)
            except TransportError as exc:
                if not idempotent or attempt == RETRIES:
                    raise errors.ConnectionFailed(
                        f"cannot reach the grid at {self.base_url}: {exc}",
                        hint="check RGRID_API_URL, or `rgrid server status` for the local grid",
                    ) from exc
            else:
                if response.status not in RETRY_STATUSES or attempt == RETRIES:
                    return _checked(response)
            finally:
                if stream is not None:
                    stream.close()
            if self.on_retry is not None:
                self.on_retry(attempt, RETRIES)
            time.sleep(min(RETRY_BASE_S * 2 ** (attempt - 1), RETRY_MAX_S))
        raise AssertionError("unreachable")

    def _get(self, path: str, model: type[T], **params: Any) -> T:
        return schemas.load(model, self._request("GET", path, params=params).json())

    def _post(self, path: str, model: type[T], body: Any = None, *, idempotent: bool = True) -> T:
        json_body = schemas.dump(body) if body is not None else None
        response = self._request("POST", path, json_body=json_body, idempotent=idempotent)
        return schemas.load(model, response.json())

    # -- account --------------------------------------------------------------------------
    def health(self) -> schemas.Health:
        return self._get("/health", schemas.Health)

    def me(self) -> schemas.Me:
        return self._get("/api/v1/me", schemas.Me)

    def create_account(self, name: str, is_admin: bool = False) -> schemas.AccountCreated:
        body = schemas.AccountCreate(name=name, is_admin=is_admin)
        return self._post("/api/v1/accounts", schemas.AccountCreated, body, idempotent=False)

    def create_key(self, name: str = "", account_id: str | None = None) -> schemas.KeyCreated:
        body = schemas.KeyCreate(name=name, account_id=account_id)
        return self._post("/api/v1/keys", schemas.KeyCreated, body, idempotent=False)

    def list_keys(self) -> list[schemas.KeyPublic]:
        data = self._request("GET", "/api/v1/keys").json()
        return [schemas.load(schemas.KeyPublic, k) for k in data]

    def revoke_key(self, key_id: str) -> schemas.KeyPublic:
        return self._post(f"/api/v1/keys/{quote(key_id)}/revoke", schemas.KeyPublic)

    def runtimes(self) -> schemas.RuntimesPublic:
        return self._get("/api/v1/runtimes", schemas.RuntimesPublic)

    def workers(self) -> list[schemas.WorkerPublic]:
        data = self._request("GET", "/api/v1/workers").json()
        return [schemas.load(schemas.WorkerPublic, w) for w in data]

    def autoscaler(self) -> schemas.AutoscalerPublic:
        data = self._request("GET", "/api/v1/autoscaler").json()
        return schemas.load(schemas.AutoscalerPublic, data)

    def console_link(self) -> str:
        """A one-time URL that signs a browser in to the grid's web console as this key."""
        link = self._post("/api/v1/console/links", schemas.ConsoleLinkPublic, idempotent=False)
        return self.base_url + link.path

    # -- blobs ----------------------------------------------------------------------------
    def missing_blobs(self, hashes: list[str]) -> list[str]:
        body = schemas.BlobsQuery(digests=hashes)
        return self._post("/api/v1/blobs/missing", schemas.BlobsMissing, body).missing

    def put_tree(self, digest: str, tree: schemas.TreeIn) -> schemas.TreePublic:
        """Store a project tree whose files are uploaded (idempotent)."""
        path = f"/api/v1/trees/{digest}"
        answer = self._request("PUT", path, json_body=schemas.dump(tree))
        return schemas.load(schemas.TreePublic, answer.json())

    def upload_blob(self, digest: str, path: Path, size: int) -> None:
        """Stream a file to the grid; the grid verifies it against ``digest``. Over 1 MiB and
        not compressed already, it travels zstd-compressed (chunked, the size in a header).
        Over ``RESUMABLE_BYTES`` the upload is resumable: after a cut connection (or a killed
        CLI) the next attempt sends only what the grid does not hold yet."""
        url = f"/api/v1/blobs/{digest}"
        resumable = size > RESUMABLE_BYTES
        for attempt in range(1, RETRIES + 1):
            offset = 0
            if resumable:
                offset = self._get(f"{url}/upload", schemas.UploadProgress).offset
            compress = self.compresses and compression.worth_compressing(path.name, size - offset)
            headers = {"content-type": "application/octet-stream"}
            if compress:  # chunked: the compressed length is not known in advance
                headers["content-encoding"] = compression.ENCODING
            else:
                headers["content-length"] = str(size - offset)
            if compress or resumable:
                headers[compression.SIZE_HEADER] = str(size)
            if resumable:
                headers[schemas.RESUMABLE_HEADER] = "1"
                headers[schemas.OFFSET_HEADER] = str(offset)

            def body(offset: int = offset, compress: bool = compress) -> IO[bytes]:
                handle: IO[bytes] = path.open("rb")
                handle.seek(offset)
                # exactly the bytes hashed, even if the file has grown or shrunk since: the
                # grid then refuses what no longer matches instead of the request breaking
                handle = cast(IO[bytes], _Exactly(handle, max(0, size - offset)))
                if self.on_progress is not None:
                    metered = _Metered(handle, offset, size, path.name, self.on_progress)
                    handle = cast(IO[bytes], metered)
                return compression.compressing_reader(handle) if compress else handle

            try:
                sent = self._request(
                    "PUT",
                    url,
                    body=body,
                    headers=headers,
                    idempotent=not resumable,
                    timeout=DEFAULT_TIMEOUT_S + size / STORE_BYTES_PER_S,
                )
                if sent.status != 202:  # 202: the grid holds part of it; send the rest
                    return
            except (errors.ConnectionFailed, errors.Conflict):
                if not resumable or attempt == RETRIES:
                    raise
            if self.on_retry is not None:
                self.on_retry(attempt, RETRIES)
            time.sleep(min(RETRY_BASE_S * 2 ** (attempt - 1), RETRY_MAX_S))

    # -- executions -----------------------------------------------------------------------
    def submit(self, spec: schemas.ExecutionCreate) -> schemas.ExecutionPublic:
        # Safe to retry: the idempotency key makes a repeated submit return the first one.
        return self._post("/api/v1/executions", schemas.ExecutionPublic, spec)

    def submit_batch(self, spec: schemas.BatchCreate) -> schemas.BatchPublic:
        # Safe to retry: the idempotency key makes a repeated submit return the first one.
        return self._post("/api/v1/batches", schemas.BatchPublic, spec)

    def batch(self, batch_id: str) -> schemas.BatchPublic:
        return self._get(f"/api/v1/batches/{quote(batch_id)}", schemas.BatchPublic)

    def batch_items(
        self,
        batch_id: str,
        changed_after: datetime | None = None,
        wait_s: float = 0.0,
        inline_bytes: int = 0,
    ) -> schemas.BatchItemsPublic:
        """All the batch's items, or those changed after ``changed_after`` (a previous
        answer's ``next_changed_after``); with ``wait_s``, an unfinished batch's answer comes
        when it ends or after ``wait_s`` (an older grid answers at once); with
        ``inline_bytes``, outputs up to that size may come with their content, which
        ``download`` then saves without a request (an older grid sends none)."""
        path = f"/api/v1/batches/{quote(batch_id)}/items"
        query: dict[str, str] = {}
        if changed_after is not None:
            query["changed_after"] = changed_after.isoformat()
        if wait_s > 0:
            query["wait"] = f"{wait_s:g}"
        if inline_bytes > 0:
            query["inline"] = str(inline_bytes)
        if query:
            path += "?" + urlencode(query)
        return self._get(path, schemas.BatchItemsPublic)

    def cancel_batch(self, batch_id: str) -> schemas.BatchPublic:
        return self._post(f"/api/v1/batches/{quote(batch_id)}/cancel", schemas.BatchPublic)

    def retry_batch(
        self,
        batch_id: str,
        *,
        failed_only: bool,
        inputs: dict[str, schemas.FileIn] | None = None,
    ) -> list[schemas.ExecutionPublic]:
        body = schemas.dump(schemas.BatchRetry(failed_only=failed_only, inputs=inputs or {}))
        path = f"/api/v1/batches/{quote(batch_id)}/retry"
        data = self._request("POST", path, json_body=body, idempotent=False).json()
        return [schemas.load(schemas.ExecutionPublic, e) for e in data]

    def get(self, execution_id: str) -> schemas.ExecutionPublic:
        return self._get(f"/api/v1/executions/{quote(execution_id)}", schemas.ExecutionPublic)

    def cost(self, *, since: str | None, until: str | None, by: str) -> dict[str, Any]:
        """The account's cost report (``GET /api/v1/cost``), as the grid sends it."""
        params = {
            "by": by,
            **({"since": since} if since else {}),
            **({"until": until} if until else {}),
        }
        report: dict[str, Any] = self._request("GET", "/api/v1/cost", params=params).json()
        return report

    def estimate(self, script: str, digest: str) -> dict[str, Any]:
        """Run-time statistics of the account's earlier runs of ``script``."""
        answer = self._request(
            "GET", "/api/v1/estimate", params={"script": script, "digest": digest}
        )
        stats: dict[str, Any] = answer.json()
        return stats

    def spending_limit(self) -> schemas.SpendingLimitPublic:
        return self._get("/api/v1/cost/limit", schemas.SpendingLimitPublic)

    def set_spending_limit(self, amount: str, period: str) -> schemas.SpendingLimitPublic:
        body = {"amount": amount, "period": period}
        answer = self._request("PUT", "/api/v1/cost/limit", json_body=body)
        return schemas.load(schemas.SpendingLimitPublic, answer.json())

    def remove_spending_limit(self) -> None:
        self._request("DELETE", "/api/v1/cost/limit", idempotent=False)

    def list(
        self,
        *,
        states: list[str] | None = None,
        metadata: dict[str, str] | None = None,
        since: str | None = None,
        limit: int = 50,
        batch: str | None = None,
    ) -> schemas.ExecutionsPublic:
        params: dict[str, Any] = {"limit": limit}
        if batch:
            params["batch"] = batch
        if states:
            params["status"] = states
        if metadata:
            params["metadata"] = [f"{k}={v}" for k, v in metadata.items()]
        if since:
            params["since"] = since
        return self._get("/api/v1/executions", schemas.ExecutionsPublic, **params)

    def retry(self, execution_id: str, *, force: bool = False) -> schemas.ExecutionPublic:
        path = f"/api/v1/executions/{quote(execution_id)}/retry?force={str(force).lower()}"
        return self._post(path, schemas.ExecutionPublic, idempotent=False)

    def cancel(self, execution_id: str) -> schemas.ExecutionPublic:
        return self._post(
            f"/api/v1/executions/{quote(execution_id)}/cancel", schemas.ExecutionPublic
        )

    def logs(
        self,
        execution_id: str,
        *,
        after: int = 0,
        limit: int = 1000,
        wait: float = 0.0,
        attempt: int | None = None,
        outputs: bool = False,
    ) -> schemas.LogsPublic:
        """A page of lines after ``after``. ``outputs``: the page that ends the log carries
        the ended execution and its outputs (``execution``, ``outputs``; an older grid sends
        neither)."""
        params: dict[str, Any] = {"after": after, "limit": limit, "wait": wait}
        if attempt is not None:
            params["attempt"] = attempt
        if outputs:
            params["outputs"] = "true"
        response = self._request(
            "GET",
            f"/api/v1/executions/{quote(execution_id)}/logs",
            params=params,
            timeout=wait + 30.0,
        )
        return schemas.load(schemas.LogsPublic, response.json())

    def stream_logs(self, execution_id: str, *, after: int = 0) -> Iterator[schemas.LogsPublic]:
        """Pages of lines after ``after`` as they are produced, over a WebSocket; the last page
        has ``done`` set. Raises ``websocket.StreamClosed`` when the connection drops."""
        from rgrid.client import websocket

        socket = websocket.connect(
            self.base_url,
            f"/api/v1/executions/{quote(execution_id)}/logs/stream",
            params={"after": after},
            headers={k: v for k, v in self._http.headers.items() if k == "authorization"},
            timeout=10.0,
        )
        try:
            for message in socket.messages():
                yield schemas.load(schemas.LogsPublic, message)
        finally:
            socket.close()

    def artifacts(self, execution_id: str, kind: str | None = None) -> schemas.ArtifactsPublic:
        params = {"kind": kind} if kind else {}
        path = f"/api/v1/executions/{quote(execution_id)}/artifacts"
        return self._get(path, schemas.ArtifactsPublic, **params)

    def download(
        self,
        execution_id: str,
        artifact: schemas.ArtifactPublic,
        dest_root: Path,
        target: Path | None = None,
    ) -> Path:
        """Stream one output to ``dest_root/<path>``: temp name, digest check, rename.

        Refuses unsafe names (``..``, absolute, NUL) with ``errors.UnsafePath`` before writing.
        An ``OSError`` means this file system cannot hold the file there (a name it does not
        allow, a directory in the way, a full disk); nothing is left behind then either.
        A broken-off download is tried again (the grid breaks off one whose stored bytes turn
        out damaged, and answers the next try with ``BlobCorrupt``).
        """
        dest = target if target is not None else join_under(dest_root, artifact.path)
        if artifact.content is not None and self._save_inline(artifact, dest):
            return dest
        for attempt in range(1, RETRIES + 1):
            try:
                return self._download_once(execution_id, artifact, dest)
            except errors.ConnectionFailed:
                if attempt == RETRIES:
                    raise
            if self.on_retry is not None:
                self.on_retry(attempt, RETRIES)
            time.sleep(min(RETRY_BASE_S * 2 ** (attempt - 1), RETRY_MAX_S))
        raise AssertionError("unreachable")

    def _save_inline(self, artifact: schemas.ArtifactPublic, dest: Path) -> bool:
        """Save an output whose bytes came with it (``batch_items(inline_bytes=…)``), checked
        as a download is; whether it was saved (content that does not match is downloaded)."""
        import binascii

        try:
            content = binascii.a2b_base64(artifact.content or "", strict_mode=True)
        except binascii.Error:
            return False
        try:
            self._save(io.BytesIO(content), artifact, dest, compressed=False)
        except errors.IntegrityError:
            return False
        except TransportError:  # fewer bytes than the output's size
            return False
        except _LocalFailure as exc:
            raise exc.error from None
        return True

    def _download_once(
        self, execution_id: str, artifact: schemas.ArtifactPublic, dest: Path
    ) -> Path:
        path = f"/api/v1/executions/{quote(execution_id)}/outputs/{quote(artifact.path)}"
        try:
            accept = {"accept-encoding": compression.ENCODING} if self.compresses else {}
            with self._http.open("GET", path, headers=accept) as response:
                location = response.getheader("location")
                if response.status in REDIRECTS and location:
                    response.read()
                    return self._download_direct(location, artifact, dest)
                if response.status >= 400:  # before anything is created locally
                    _checked(Response(response.status, response.read()))
                compressed = response.getheader("content-encoding") == compression.ENCODING
                self._save(response, artifact, dest, compressed)
        except TransportError as exc:
            raise errors.ConnectionFailed(f"download interrupted: {exc}") from exc
        except _LocalFailure as exc:
            raise exc.error from None
        return dest

    def _download_direct(self, url: str, artifact: schemas.ArtifactPublic, dest: Path) -> Path:
        """Fetch an output from where the grid redirected (storage's presigned URL): a
        separate connection, without the grid's credentials."""
        parts = urlsplit(url)
        direct = Transport(f"{parts.scheme}://{parts.netloc}")
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            with direct.open("GET", target) as response:
                if response.status >= 400:
                    raise errors.StorageError(
                        f"the storage refused the download of {artifact.path} "
                        f"(HTTP {response.status})",
                        hint="try again; the link the grid gave is valid for an hour",
                    )
                self._save(response, artifact, dest, compressed=False)
        finally:
            direct.close()
        return dest

    def _save(
        self,
        response: Incoming | io.BytesIO,
        artifact: schemas.ArtifactPublic,
        dest: Path,
        compressed: bool,
    ) -> None:
        """Stream a response body to ``dest``: temp name, digest check, rename. Local file
        errors come out as ``_LocalFailure``, apart from the connection's own."""
        import tempfile

        with _local():
            dest.parent.mkdir(parents=True, exist_ok=True)
            _remove_abandoned_parts(dest)
            fd, tmp_name = tempfile.mkstemp(
                prefix=_part_prefix(dest), suffix=".part", dir=dest.parent
            )
        try:
            # locked until renamed: a later download removes it only if this process died
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.fchmod(fd, _new_file_mode())  # mkstemp's 0600, as a file the script wrote
            with os.fdopen(fd, "wb") as handle:
                hasher = digests.Hasher.like(artifact.digest)
                report = _Reporter("downloading", dest.name, artifact.size, self.on_progress)

                def keep(piece: bytes) -> None:
                    hasher.update(piece)
                    with _local():
                        handle.write(piece)
                    report.advance(len(piece))

                if compressed:
                    decompressor = compression.Decompressor(keep, artifact.size)
                    while chunk := response.read(CHUNK):
                        decompressor.feed(chunk)
                    decompressor.finish()
                else:
                    while chunk := response.read(CHUNK):
                        keep(chunk)
                    if report.done < artifact.size:  # an answer shorter than the output
                        raise TransportError(
                            f"the body broke off after {report.done} of {artifact.size} bytes"
                        )
                if hasher.result() != artifact.digest:
                    raise errors.IntegrityError(f"{artifact.path} arrived corrupted; try again")
                with _local():
                    handle.flush()  # every byte in the file before it takes the output's name
                    os.replace(tmp_name, dest)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise


def idempotency_key() -> str:
    """A new random key for a submission, a version-4 UUID in its usual text form, made without
    the ``uuid`` module (whose import loads ``platform``: milliseconds of every run)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class _LocalFailure(Exception):
    """A local file operation failed during a download: carried past the transport, which
    takes any ``OSError`` for a broken connection."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


@contextlib.contextmanager
def _local() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise _LocalFailure(exc) from exc


class _Reporter:
    """Calls a progress callback as bytes move, at most once per ``STEP`` bytes."""

    STEP = 1024 * 1024

    def __init__(
        self,
        verb: str,
        name: str,
        total: int,
        callback: Callable[[str, str, int, int], None] | None,
        done: int = 0,
    ) -> None:
        self._verb, self._name, self._total, self._callback = verb, name, total, callback
        self.done = self._reported = done
        self._ended = False
        if callback is not None:
            callback(verb, name, done, total)  # the start: rates are measured from here

    def advance(self, count: int) -> None:
        self.done += count
        if self._callback is None or self._ended:
            return
        if self.done - self._reported >= self.STEP or self.done >= self._total:
            self._reported = self.done
            self._ended = self.done >= self._total
            self._callback(self._verb, self._name, self.done, self._total)


class _Reading(io.RawIOBase):
    """A file being uploaded, read through ``read`` (which a subclass defines)."""

    def __init__(self, inner: IO[bytes]) -> None:
        super().__init__()
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


class _Exactly(_Reading):
    """The first ``length`` bytes of a file being uploaded; ``errors.IntegrityError`` if it
    ends before them (it was shortened after it was hashed)."""

    def __init__(self, inner: IO[bytes], length: int) -> None:
        super().__init__(inner)
        self._left = length

    def read(self, size: int = -1) -> bytes:
        wanted = self._left if size < 0 else min(size, self._left)
        data = self._inner.read(wanted) if wanted else b""
        if wanted and not data:
            raise errors.IntegrityError(f"{self._left} bytes fewer than when it was read")
        self._left -= len(data)
        return data


class _Metered(_Reading):
    """A file being uploaded that reports how much of it was read."""

    def __init__(
        self,
        inner: IO[bytes],
        offset: int,
        total: int,
        name: str,
        callback: Callable[[str, str, int, int], None],
    ) -> None:
        super().__init__(inner)
        self._report = _Reporter("uploading", name, total, callback, done=offset)

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._report.advance(len(data))
        return data


def _checked(response: Response) -> Response:
    """The response if it succeeded; else the error the grid described, as an ``RgridError``."""
    if response.status < 400:
        return response
    try:
        decoded = response.json()
    except ValueError:
        decoded = None
    raise errors.from_body(response.status, decoded)


def _part_prefix(dest: Path) -> str:
    """The start of the temp names of downloads to ``dest``: short whatever the name (a name
    of 255 bytes is legal, and the temp name beside it must fit NAME_MAX too), and the same
    for every download of ``dest``, so abandoned ones can be found."""
    import hashlib  # here: loading OpenSSL costs a command's start ms, and few commands download

    tag = hashlib.sha256(os.fsencode(dest.name)).hexdigest()[:16]
    return f".rgrid-{tag}."


def _remove_abandoned_parts(dest: Path) -> None:
    """Delete the temp files an earlier download of ``dest`` left when its process died
    (SIGKILL, power loss). A live download holds a lock on its temp file; a dead one's is gone."""
    import glob

    for part in dest.parent.glob(f"{glob.escape(_part_prefix(dest))}*.part"):
        try:
            fd = os.open(part, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # another download is writing it
        else:
            part.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _new_file_mode() -> int:
    """The mode a new file gets here (0666 less the umask), as with a plain ``open(..., "w")``."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask
