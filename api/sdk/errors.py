"""SDK errors: one exception class per kind of failure, built from problem+json.

Every error the server returns is RFC 9457 ``application/problem+json`` with a stable
``code``; :func:`error_from_response` turns it into the matching :class:`UsefirstError`
subclass carrying ``status``, ``code``, ``detail`` and the failing ``errors`` (field
paths). Failures that never reached an answer (refused connection, timeout) are
:class:`TransportError` with ``status`` None.

:func:`is_transient` says which failures are worth retrying with the same request:
transport errors, 408, 425, 429 and 5xx. Everything else is the caller's to fix.
"""

from __future__ import annotations

from typing import Any

import httpx

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class UsefirstError(Exception):
    """A request failed. ``status`` is the HTTP status (None when no answer came),
    ``code`` the stable machine code (``validation_failed``, ``model_not_found``…),
    ``detail`` the human explanation, ``errors`` the failing fields as
    ``{"field", "code", "message"}`` dicts, ``body`` the whole problem document."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str = "error",
        errors: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{status or 'no answer'} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.errors: list[dict[str, Any]] = list(errors or [])
        self.body: dict[str, Any] = dict(body or {})
        self.retry_after_s = retry_after_s

    @property
    def request_id(self) -> str | None:
        """The server's request id (quote it when reporting a problem)."""
        value = self.body.get("request_id")
        return value if isinstance(value, str) else None


class TransportError(UsefirstError):
    """No answer: the connection failed or timed out. Transient."""


class BadRequest(UsefirstError):
    """400: the request is malformed (e.g. not JSON)."""


class AuthenticationError(UsefirstError):
    """401: the API key is missing, unknown or revoked."""


class PermissionDenied(UsefirstError):
    """403: the key's role may not do this."""


class NotFoundError(UsefirstError):
    """404: the object does not exist or is not yours."""


class ConflictError(UsefirstError):
    """409: the request contradicts stored state (reused idempotency key, wrong state)."""


class PayloadTooLargeError(UsefirstError):
    """413: the body or batch is too large; send smaller batches."""


class ValidationError(UsefirstError):
    """422: a field is invalid; ``errors`` names each one."""


class RateLimited(UsefirstError):
    """429: slow down; ``retry_after_s`` says for how long when the server said so."""


class ServerError(UsefirstError):
    """5xx: the server failed; retrying the same request is safe for idempotent calls."""


class QueueFull(Exception):
    """A usage reporter's bounded queue is full and it was told not to block."""


class ReporterClosed(Exception):
    """The usage reporter was closed; it accepts no more events."""


_BY_STATUS: dict[int, type[UsefirstError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimited,
}


def error_from_response(response: httpx.Response) -> UsefirstError:
    """The exception for a non-2xx response (problem+json or anything else)."""
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    status = response.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else UsefirstError)
    detail = body.get("detail") if isinstance(body.get("detail"), str) else None
    if detail is None:
        text = response.text.strip()
        detail = text[:500] if text else response.reason_phrase or "request failed"
    code = body.get("code") if isinstance(body.get("code"), str) else None
    errors = body.get("errors") if isinstance(body.get("errors"), list) else None
    return cls(
        detail,
        status=status,
        code=code or f"http_{status}",
        errors=errors,
        body=body,
        retry_after_s=_retry_after_s(response.headers.get("retry-after")),
    )


def error_from_transport(error: httpx.TransportError) -> TransportError:
    """The exception for a request that got no answer."""
    return TransportError(
        f"{type(error).__name__}: {error}" if str(error) else type(error).__name__,
        code="transport_error",
    )


def is_transient(error: BaseException) -> bool:
    """Whether sending the same request again may succeed."""
    if isinstance(error, TransportError):
        return True
    return isinstance(error, UsefirstError) and error.status in TRANSIENT_STATUSES


def _retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the delay-seconds form; HTTP dates are ignored)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
