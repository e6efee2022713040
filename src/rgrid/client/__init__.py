"""The synchronous HTTP client of the grid: one method per endpoint; errors rebuilt from the envelope."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from rgrid import errors, schemas
from rgrid.paths import join_under

T = TypeVar("T", bound=BaseModel)

CHUNK = 1024 * 1024
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
RETRIES = 5
RETRY_STATUSES = frozenset({502, 503, 504})


class Client:
    """Talks to one grid with one API key. ``http`` may be injected (tests use a TestClient)."""

    def __init__(
        self, base_url: str, api_key: str | None, http: httpx.Client | None = None
    ) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._http = http or httpx.Client(base_url=self.base_url, timeout=TIMEOUT)
        self._http.headers.update(headers)
        #: called with (attempt, total) before a retry, to tell the user
        self.on_retry: Callable[[int, int], None] | None = None

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool = True,
        body: Callable[[], Iterator[bytes]] | None = None,
        **kw: Any,
    ) -> httpx.Response:
        """Send, retrying idempotent requests on connection errors and 502/503/504."""
        for attempt in range(1, RETRIES + 1):
            try:
                if body is not None:  # a fresh stream for every attempt
                    kw["content"] = body()
                response = self._http.request(method, url, **kw)
            except httpx.TransportError as exc:
                if not idempotent or attempt == RETRIES:
                    raise errors.ConnectionFailed(
                        f"cannot reach the grid at {self.base_url}: {exc}",
                        hint="check RGRID_API_URL, or `rgrid server status` for the local grid",
                    ) from exc
            else:
                if response.status_code not in RETRY_STATUSES or attempt == RETRIES:
                    return _checked(response)
            if self.on_retry is not None:
                self.on_retry(attempt, RETRIES)
            time.sleep(min(0.25 * 2 ** (attempt - 1), 4.0))
        raise AssertionError("unreachable")

    def _get(self, url: str, model: type[T], **params: Any) -> T:
        return model.model_validate(self._request("GET", url, params=params).json())

    # -- account --------------------------------------------------------------------------
    def health(self) -> schemas.Health:
        return self._get("/health", schemas.Health)

    def me(self) -> schemas.Me:
        return self._get("/api/v1/me", schemas.Me)

    def create_account(self, name: str, is_admin: bool = False) -> schemas.AccountCreated:
        body = schemas.AccountCreate(name=name, is_admin=is_admin).model_dump()
        response = self._request("POST", "/api/v1/accounts", json=body, idempotent=False)
        return schemas.AccountCreated.model_validate(response.json())

    def create_key(self, name: str = "", account_id: str | None = None) -> schemas.KeyCreated:
        body = schemas.KeyCreate(name=name, account_id=account_id).model_dump()
        response = self._request("POST", "/api/v1/keys", json=body, idempotent=False)
        return schemas.KeyCreated.model_validate(response.json())

    def list_keys(self) -> list[schemas.KeyPublic]:
        response = self._request("GET", "/api/v1/keys")
        return [schemas.KeyPublic.model_validate(k) for k in response.json()]

    def revoke_key(self, key_id: str) -> schemas.KeyPublic:
        response = self._request("POST", f"/api/v1/keys/{quote(key_id)}/revoke")
        return schemas.KeyPublic.model_validate(response.json())

    # -- blobs ----------------------------------------------------------------------------
    def missing_blobs(self, hashes: list[str]) -> list[str]:
        body = schemas.BlobsQuery(sha256=hashes).model_dump()
        response = self._request("POST", "/api/v1/blobs/missing", json=body)
        return schemas.BlobsMissing.model_validate(response.json()).missing

    def upload_blob(self, sha256: str, path: Path, size: int) -> None:
        def chunks() -> Iterator[bytes]:
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    yield chunk

        headers = {"content-length": str(size), "content-type": "application/octet-stream"}
        self._request("PUT", f"/api/v1/blobs/{sha256}", body=chunks, headers=headers)

    # -- executions -----------------------------------------------------------------------
    def submit(self, spec: schemas.ExecutionCreate) -> schemas.ExecutionPublic:
        # Safe to retry: the idempotency key makes a repeated submit return the first one.
        response = self._request("POST", "/api/v1/executions", json=spec.model_dump(mode="json"))
        return schemas.ExecutionPublic.model_validate(response.json())

    def get(self, execution_id: str) -> schemas.ExecutionPublic:
        return self._get(f"/api/v1/executions/{quote(execution_id)}", schemas.ExecutionPublic)

    def list(
        self,
        *,
        states: list[str] | None = None,
        metadata: dict[str, str] | None = None,
        since: str | None = None,
        limit: int = 50,
    ) -> schemas.ExecutionsPublic:
        params: dict[str, Any] = {"limit": limit}
        if states:
            params["status"] = states
        if metadata:
            params["metadata"] = [f"{k}={v}" for k, v in metadata.items()]
        if since:
            params["since"] = since
        return self._get("/api/v1/executions", schemas.ExecutionsPublic, **params)

    def cancel(self, execution_id: str) -> schemas.ExecutionPublic:
        response = self._request("POST", f"/api/v1/executions/{quote(execution_id)}/cancel")
        return schemas.ExecutionPublic.model_validate(response.json())

    def logs(
        self, execution_id: str, *, after: int = 0, limit: int = 1000, wait: float = 0.0
    ) -> schemas.LogsPublic:
        params = {"after": after, "limit": limit, "wait": wait}
        response = self._request(
            "GET",
            f"/api/v1/executions/{quote(execution_id)}/logs",
            params=params,
            timeout=httpx.Timeout(wait + 30.0, connect=5.0),
        )
        return schemas.LogsPublic.model_validate(response.json())

    def artifacts(self, execution_id: str, kind: str | None = None) -> schemas.ArtifactsPublic:
        params = {"kind": kind} if kind else {}
        return self._get(
            f"/api/v1/executions/{quote(execution_id)}/artifacts", schemas.ArtifactsPublic, **params
        )

    def download(
        self, execution_id: str, artifact: schemas.ArtifactPublic, dest_root: Path
    ) -> Path:
        """Stream one output to ``dest_root/<path>``: temp name, sha256 check, rename.

        Refuses unsafe names (``..``, absolute, NUL) with ``errors.UnsafePath`` before writing.
        """
        dest = join_under(dest_root, artifact.path)
        url = f"/api/v1/executions/{quote(execution_id)}/outputs/{quote(artifact.path)}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            digest = _stream_to(self._http, url, fd)
            if digest != artifact.sha256:
                raise errors.IntegrityError(f"{artifact.path} arrived corrupted; try again")
            os.replace(tmp_name, dest)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return dest


def _stream_to(http: httpx.Client, url: str, fd: int) -> str:
    import hashlib

    digest = hashlib.sha256()
    with os.fdopen(fd, "wb") as handle:
        try:
            with http.stream("GET", url) as response:
                if response.status_code >= 400:
                    response.read()
                    _checked(response)
                for chunk in response.iter_bytes(CHUNK):
                    digest.update(chunk)
                    handle.write(chunk)
        except httpx.TransportError as exc:
            raise errors.ConnectionFailed(f"download interrupted: {exc}") from exc
    return digest.hexdigest()


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code < 400:
        return response
    try:
        body = response.json()
    except ValueError:
        body = None
    raise errors.from_body(response.status_code, body)
