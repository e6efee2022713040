"""The one exception tree of rgrid, shared by the CLI, the client and the server.

    RgridError                      code INTERNAL        500
    ├── InvalidRequest              VALIDATION_ERROR     422
    │   ├── IntegrityError          INTEGRITY_ERROR      422  (bytes do not match their digest)
    │   ├── UnsafePath              UNSAFE_PATH          422  (.., absolute, NUL: zip-slip)
    │   ├── TreeUnknown             TREE_UNKNOWN         422  (send the project tree first)
    │   └── BlobsUnknown            BLOBS_UNKNOWN        422  (upload these contents first)
    ├── Unauthorized                UNAUTHORIZED         401
    ├── Forbidden                   FORBIDDEN            403
    ├── NotFound                    NOT_FOUND            404  (also another account's objects)
    │   └── AmbiguousId             AMBIGUOUS_ID         404→409 (a prefix matching several ids)
    ├── Conflict                    CONFLICT             409
    ├── PayloadTooLarge             PAYLOAD_TOO_LARGE    413
    ├── SpendingLimitExceeded       SPENDING_LIMIT_EXCEEDED 402
    ├── ArtifactExpired             ARTIFACT_EXPIRED     410
    ├── BlobCorrupt                 BLOB_CORRUPT         410  (stored bytes lost or damaged)
    ├── RateLimited                 RATE_LIMITED         429
    ├── StoreError                  STORE_ERROR          500  (database adapter failures)
    ├── StorageError                STORAGE_ERROR        500  (blob storage adapter failures)
    ├── SandboxError                SANDBOX_ERROR        500  (could not start the sandbox)
    ├── DependencyError             DEPENDENCY_ERROR     422  (an environment could not be built)
    ├── ProviderError               PROVIDER_ERROR       502  (a cloud provider refused or failed)
    ├── MissingExtra                MISSING_EXTRA        500  (an optional dependency is not installed)
    ├── ConnectionFailed            CONNECTION_FAILED    (client side: the grid cannot be reached)
    └── UsageError                  USAGE_ERROR          (client side: bad local input)

Each class's docstring is its default message. ``code`` is stable: tests and clients match on it,
never on the text. ``status`` is the HTTP status the API maps it to (in ``api/errors.py`` only).
"""

from __future__ import annotations

from typing import Any, ClassVar


class RgridError(Exception):
    """Something went wrong inside rgrid."""

    code: ClassVar[str] = "INTERNAL"
    status: ClassVar[int] = 500

    def __init__(
        self,
        message: str | None = None,
        *,
        hint: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or (type(self).__doc__ or "").strip()
        self.hint = hint
        self.details = details or {}
        super().__init__(self.message)

    def to_body(self) -> dict[str, Any]:
        """The SPEC §13 error envelope."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            error["hint"] = self.hint
        if self.details:
            error["details"] = self.details
        return {"error": error}


class InvalidRequest(RgridError):
    """The request is not valid."""

    code = "VALIDATION_ERROR"
    status = 422


class IntegrityError(InvalidRequest):
    """The received bytes do not match their digest."""

    code = "INTEGRITY_ERROR"


class UnsafePath(InvalidRequest):
    """The path is not a safe relative path."""

    code = "UNSAFE_PATH"


class TreeUnknown(InvalidRequest):
    """The grid does not hold this project tree (never sent, or its files have expired)."""

    code = "TREE_UNKNOWN"


class BlobsUnknown(InvalidRequest):
    """The grid does not hold some of the file contents a submission names: upload them
    (``details["missing"]``: their digests) and submit again."""

    code = "BLOBS_UNKNOWN"


class Unauthorized(RgridError):
    """The API key is missing, unknown or revoked."""

    code = "UNAUTHORIZED"
    status = 401


class Forbidden(RgridError):
    """This API key may not do that."""

    code = "FORBIDDEN"
    status = 403


class NotFound(RgridError):
    """Not found."""

    code = "NOT_FOUND"
    status = 404


class AmbiguousId(RgridError):
    """That id prefix matches several objects."""

    code = "AMBIGUOUS_ID"
    status = 409


class Conflict(RgridError):
    """The object is not in a state that allows this."""

    code = "CONFLICT"
    status = 409


class LeaseLost(Conflict):
    """This attempt no longer holds the execution: its lease expired and it was given to another
    attempt. Its logs, outputs and outcome are refused."""

    code = "LEASE_LOST"


class PayloadTooLarge(RgridError):
    """The payload is too large."""

    code = "PAYLOAD_TOO_LARGE"
    status = 413


class SpendingLimitExceeded(RgridError):
    """The account's spending limit is reached."""

    code = "SPENDING_LIMIT_EXCEEDED"
    status = 402


class ArtifactExpired(RgridError):
    """The artifact has expired and was deleted."""

    code = "ARTIFACT_EXPIRED"
    status = 410


class BlobCorrupt(RgridError):
    """Stored content was found lost or damaged on the grid; it is now marked missing, so
    running the command again uploads it again."""

    code = "BLOB_CORRUPT"
    status = 410


class RateLimited(RgridError):
    """Too many requests; try again shortly."""

    code = "RATE_LIMITED"
    status = 429


class StoreError(RgridError):
    """The database failed."""

    code = "STORE_ERROR"


class StorageError(RgridError):
    """The blob storage failed."""

    code = "STORAGE_ERROR"


class SandboxError(RgridError):
    """The sandbox could not start the script."""

    code = "SANDBOX_ERROR"


class DependencyError(RgridError):
    """The script's dependencies could not be installed."""

    code = "DEPENDENCY_ERROR"
    status = 422


class ProviderError(RgridError):
    """The machine provider refused or failed (quota, API down, bad token)."""

    code = "PROVIDER_ERROR"
    status = 502


class MissingExtra(RgridError):
    """An optional part of rgrid is not installed."""

    code = "MISSING_EXTRA"


class ConnectionFailed(RgridError):
    """The grid cannot be reached."""

    code = "CONNECTION_FAILED"


class UsageError(RgridError):
    """The command line is not valid."""

    code = "USAGE_ERROR"


_BY_CODE: dict[str, type[RgridError]] = {}


def _register(cls: type[RgridError]) -> None:
    _BY_CODE.setdefault(cls.code, cls)
    for sub in cls.__subclasses__():
        _register(sub)


_register(RgridError)


def from_body(status: int, body: Any) -> RgridError:
    """Rebuild the error a server sent (the inverse of ``RgridError.to_body``)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return RgridError(f"the grid answered HTTP {status} without an error body")
    cls = _BY_CODE.get(str(error.get("code")), RgridError)
    return cls(
        str(error.get("message") or cls.__doc__),
        hint=error.get("hint"),
        details=error.get("details") or {},
    )
