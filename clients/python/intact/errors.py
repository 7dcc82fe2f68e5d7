"""Typed errors: one class per outcome a pipeline branches on, chosen by the server's
`error` code (docs/http-api.md lists them)."""

from __future__ import annotations

from typing import Any, Mapping, Optional


class IntactError(Exception):
    """A request the server refused, or an answer the client could not use.

    `status` is the HTTP status (0 when the server was never reached), `code` the server's
    stable `error` code (`locked`, `conflict`, ...), `body` the whole JSON error body.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        body: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.body: Mapping[str, Any] = body if body is not None else {}

    @property
    def field(self) -> Optional[str]:
        """The input the server named as wrong, when it named one."""
        value = self.body.get("field")
        return value if isinstance(value, str) else None

    @property
    def retryable(self) -> bool:
        """True when the server said the same request may succeed later."""
        return bool(self.body.get("retryable")) or self.code in ("rate_limited", "busy")

    def __str__(self) -> str:
        if self.status:
            return f"{self.status} {self.code or 'error'}: {self.message}"
        return self.message


class InvalidError(IntactError):
    """400: a repo, name, version, path or other input broke its grammar or a rule
    (`invalid`, `bad_request`, `unsupported`, `path_conflict`, ...)."""


class ChecksumMismatchError(InvalidError):
    """400 `checksum_mismatch`: the bytes sent did not hash to the declared sha256."""


class AuthError(IntactError):
    """401 `unauthorized` or 403 `forbidden`/`cross_site`: the request did nothing."""


class UnauthorizedError(AuthError):
    """401: no token, or one the server does not accept (unknown, revoked, expired)."""


class ForbiddenError(AuthError):
    """403: the token lacks the scope this request needs."""


class NotFoundError(IntactError):
    """404: unknown repo, version, tag, file or transaction."""


class ConflictLikeError(IntactError):
    """Any 409: the request clashed with what the server holds."""


class LockedError(ConflictLikeError):
    """409 `locked`: another open transaction holds this version (`holder` says which)."""

    @property
    def holder(self) -> Mapping[str, Any]:
        value = self.body.get("holder")
        return value if isinstance(value, dict) else {}


class ConflictError(ConflictLikeError):
    """409 `conflict`: committing would change an existing version's content; the version
    stays as it was. `differences` says how (`changed`, `only_existing`, `only_new`,
    `metadata_keys`)."""

    @property
    def differences(self) -> Mapping[str, Any]:
        value = self.body.get("differences")
        return value if isinstance(value, dict) else {}


class ExistsError(ConflictLikeError):
    """409 `exists`: the thing to create exists already (e.g. a token name)."""


class NotOpenError(ConflictLikeError):
    """409 `not_open`: the transaction is committed, aborted or expired (`state`)."""

    @property
    def state(self) -> Optional[str]:
        value = self.body.get("state")
        return value if isinstance(value, str) else None


class TagMovedError(ConflictLikeError):
    """409 `tag_moved`: the tag did not point where `expect` said; `current` is where it
    points now (None when it does not exist)."""

    @property
    def current(self) -> Optional[str]:
        value = self.body.get("current")
        return value if isinstance(value, str) else None


class BlobNotStoredError(ConflictLikeError):
    """409 `blob_not_stored`: a file added by digest names bytes the server does not hold
    for this caller; upload them instead. The client handles this itself."""


class UploadsInProgressError(ConflictLikeError):
    """409 `uploads_in_progress`: a commit arrived while uploads were still streaming."""


class IdempotencyMismatchError(IntactError):
    """422 `idempotency_mismatch` (or found by the client): an idempotency key was reused for
    a different request or different content."""


class TooLargeError(IntactError):
    """413/431: over a size or count limit of the server (`limit` names the setting)."""


class RateLimitedError(IntactError):
    """429: too many requests (or open transactions); wait `Retry-After` seconds."""


class UnavailableError(IntactError):
    """503 / 507 / 504: the server or its storage cannot serve the request now; nothing was
    written. Also raised when the server could not be reached at all (status 0)."""


class ServerError(IntactError):
    """500: a fault on the server (`internal`, `blob_missing`, `blob_damaged`)."""


class IntegrityError(IntactError):
    """Bytes received from the server did not match the sha256 it promised (nothing was
    written to the destination)."""


_BY_CODE: Mapping[str, type[IntactError]] = {
    "invalid": InvalidError,
    "bad_request": InvalidError,
    "unsupported": InvalidError,
    "path_conflict": InvalidError,
    "body": InvalidError,
    "checksum_mismatch": ChecksumMismatchError,
    "unauthorized": UnauthorizedError,
    "forbidden": ForbiddenError,
    "cross_site": ForbiddenError,
    "json_required": ForbiddenError,
    "not_found": NotFoundError,
    "locked": LockedError,
    "conflict": ConflictError,
    "exists": ExistsError,
    "not_open": NotOpenError,
    "tag_moved": TagMovedError,
    "blob_not_stored": BlobNotStoredError,
    "uploads_in_progress": UploadsInProgressError,
    "idempotency_mismatch": IdempotencyMismatchError,
    "too_large": TooLargeError,
    "too_many_files": TooLargeError,
    "rate_limited": RateLimitedError,
    "too_many_transactions": RateLimitedError,
    "busy": UnavailableError,
    "unavailable": UnavailableError,
    "timeout": UnavailableError,
    "insufficient_storage": UnavailableError,
}

_BY_STATUS: Mapping[int, type[IntactError]] = {
    400: InvalidError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictLikeError,
    413: TooLargeError,
    422: IdempotencyMismatchError,
    429: RateLimitedError,
    431: TooLargeError,
    503: UnavailableError,
    504: UnavailableError,
    507: UnavailableError,
}


def error_for(status: int, body: Mapping[str, Any], fallback_message: str) -> IntactError:
    """The typed error for a refused request: by the `error` code when the class knows it,
    else by the status."""
    code = body.get("error")
    code = code if isinstance(code, str) else ""
    message = body.get("message")
    message = message if isinstance(message, str) and message else fallback_message
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else IntactError
    return cls(message, status=status, code=code, body=body)
