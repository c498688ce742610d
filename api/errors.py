"""RFC 9457 problem details, in one place.

Every error response is ``application/problem+json`` with a stable ``type``
(``urn:usefirst:problem:<code>``), a ``title``, the HTTP ``status``, a human
``detail``, the ``instance`` (request path), the request id, and for validation
errors the failing field paths under ``errors``.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.errors import DomainError

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("usefirst.api")
# What a client should wait before resending a request the database failed transiently.
DATABASE_RETRY_AFTER_S = 1

HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("validation_failed", "Invalid input"),
    429: ("too_many_requests", "Too many requests"),
}


def problem_type(code: str) -> str:
    return f"urn:usefirst:problem:{code}"


def problem_response(
    request: Request | None,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if request is not None:
        body["instance"] = request.url.path
        request_id = getattr(request.state, "request_id", None)
        if request_id:
            body["request_id"] = request_id
    if errors:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    return "/".join(str(part) for part in loc)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        message = str(err.get("msg", "invalid value"))
        kind = str(err.get("type", "invalid"))
        if kind == "extra_forbidden":
            message = "unknown field; remove it (see the OpenAPI schema for the accepted fields)"
        out.append({"field": _field_path(loc), "code": kind, "message": message})
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
        return problem_response(
            request,
            status=exc.http_status,
            code=exc.code,
            title=exc.title,
            detail=exc.message,
            errors=[e.as_dict() for e in exc.errors] or None,
            extra=exc.details or None,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        if any(e["code"] == "json_invalid" for e in errors):
            return problem_response(
                request,
                status=400,
                code="malformed_json",
                title="Malformed JSON",
                detail="the request body is not valid JSON: " + errors[0]["message"],
                errors=errors,
            )
        first = errors[0] if errors else {"field": "", "message": "invalid input"}
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return problem_response(
            request,
            status=422,
            code="validation_failed",
            title="Invalid input",
            detail=f"{first['field']}: {first['message']}{more}",
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, title = HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        return problem_response(
            request,
            status=exc.status_code,
            code=code,
            title=title,
            detail=detail,
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(psycopg.OperationalError)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The connection dropped (a database restart or failover, a terminated backend) or
        # the transaction was aborted (deadlock, serialization failure): the request did not
        # complete, and sending it again is the fix (Idempotency-Key and usage event ids make
        # a resend count once, even if the commit itself went through).
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[:1]
        log.warning(
            "database unavailable: %s",
            reason[0] if reason else type(exc).__name__,
            extra={"path": request.url.path},
        )
        return problem_response(
            request,
            status=503,
            code="database_unavailable",
            title="Database temporarily unavailable",
            detail="the database connection failed or the transaction was aborted before this "
            "request completed; send the same request again (with the same Idempotency-Key, "
            "or the same usage event ids, it counts once)",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(
            request,
            status=500,
            code="internal_error",
            title="Internal error",
            detail="an unexpected error occurred; it was logged with this request id",
        )
