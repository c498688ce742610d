"""Domain errors: values with a stable machine ``code`` and a human message.

A message says what is wrong, which field, and what to do. The API maps these to
RFC 9457 ``application/problem+json`` in one place (``api/errors.py``): the
``type`` is derived from ``code``, ``status`` from ``http_status``, and
``errors`` carries the failing field paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One failing field: a JSON-pointer-like path (``events/3/chunks/0/rank``)."""

    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class DomainError(Exception):
    """Base of every error a user can cause. Never raised for our own bugs."""

    code: str = "domain_error"
    http_status: int = 400
    title: str = "Request rejected"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        errors: list[FieldError] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code
        self.errors: list[FieldError] = list(errors or [])
        if field is not None and not self.errors:
            self.errors.append(FieldError(field=field, code=self.code, message=message))
        self.details: dict[str, Any] = dict(details or {})


class ValidationFailed(DomainError):
    code = "validation_failed"
    http_status = 422
    title = "Invalid input"


class NotFound(DomainError):
    code = "not_found"
    http_status = 404
    title = "Not found"


class Conflict(DomainError):
    """The request contradicts stored state (e.g. an idempotency key reused with another body)."""

    code = "conflict"
    http_status = 409
    title = "Conflict"


class StateError(DomainError):
    """The object is in a state that does not allow this (e.g. a closed period)."""

    code = "invalid_state"
    http_status = 409
    title = "Not allowed in the current state"


class Unauthorized(DomainError):
    code = "unauthorized"
    http_status = 401
    title = "Authentication required"


class PayloadTooLarge(DomainError):
    code = "payload_too_large"
    http_status = 413
    title = "Payload too large"


class Forbidden(DomainError):
    code = "forbidden"
    http_status = 403
    title = "Forbidden"


@dataclass
class ErrorCollector:
    """Collect several field errors, then raise them together as one ValidationFailed."""

    errors: list[FieldError] = field(default_factory=list)

    def add(self, field_path: str, code: str, message: str) -> None:
        self.errors.append(FieldError(field_path, code, message))

    def raise_if_any(self, summary: str = "the request has invalid fields") -> None:
        if self.errors:
            first = self.errors[0]
            detail = (
                first.message
                if len(self.errors) == 1
                else f"{summary}: {first.message} (and {len(self.errors) - 1} more)"
            )
            raise ValidationFailed(detail, errors=self.errors)
