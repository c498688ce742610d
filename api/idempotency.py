"""``Idempotency-Key`` for POSTs that create something.

The first request with a key runs and its response is stored with a hash of the
body. A replay with the same body returns the stored response (same status,
same body, header ``Idempotent-Replayed: true``); the same key with a different
body is a 409. Concurrent requests with one key are serialised by an advisory
lock, so the second waits and then replays.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import select, text
from sqlmodel import Session

from api.deps import Principal, PrincipalDep, SessionDep
from ledger.access.models import IdempotencyRecord
from ledger.errors import Conflict, ValidationFailed

KEY_MAX = 200


class Idempotency:
    def __init__(
        self, session: Session, principal: Principal, request: Request, key: str | None, body: bytes
    ) -> None:
        self.session = session
        self.principal = principal
        self.key = key
        self.method = request.method
        self.path = request.url.path
        # The query string is part of the request: the same key and body sent for another
        # ?model_id= must be a conflict, not a replay of the first model's answer.
        self.request_sha256 = hashlib.sha256(request.url.query.encode() + b"\n" + body).hexdigest()
        self._record: IdempotencyRecord | None = None
        if key is not None:
            self._lock()
            self._record = self.session.execute(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.account_id == principal.account_id,  # type: ignore[arg-type]
                    IdempotencyRecord.method == self.method,  # type: ignore[arg-type]
                    IdempotencyRecord.path == self.path,  # type: ignore[arg-type]
                    IdempotencyRecord.key == key,  # type: ignore[arg-type]
                )
            ).scalar_one_or_none()

    def _lock(self) -> None:
        scope = f"{self.principal.account_id}|{self.method}|{self.path}|{self.key}"
        self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:scope, 0))"), {"scope": scope}
        )

    def replay(self) -> JSONResponse | None:
        """The stored response when this is a replay; raises Conflict on a changed body."""
        record = self._record
        if record is None:
            return None
        if record.request_sha256 != self.request_sha256:
            raise Conflict(
                f"Idempotency-Key {self.key!r} was already used for {self.method} {self.path} "
                "with a different request body; use a new key for a different request",
                field="Idempotency-Key",
                code="idempotency_key_reused",
            )
        return JSONResponse(
            record.response_body,
            status_code=record.status_code,
            headers={"Idempotent-Replayed": "true"},
        )

    def respond(self, status_code: int, body: Any) -> JSONResponse:
        """Store (when a key was given) and return the response."""
        encoded = jsonable_encoder(body)
        if self.key is not None:
            self.session.add(
                IdempotencyRecord(
                    account_id=self.principal.account_id,
                    method=self.method,
                    path=self.path,
                    key=self.key,
                    request_sha256=self.request_sha256,
                    status_code=status_code,
                    response_body=encoded,
                )
            )
            self.session.flush()
        return JSONResponse(encoded, status_code=status_code)


async def get_idempotency(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Any unique string (≤ 200 chars); a replay returns the original response.",
        ),
    ] = None,
) -> Idempotency:
    if idempotency_key is not None and not (0 < len(idempotency_key) <= KEY_MAX):
        raise ValidationFailed(
            f"Idempotency-Key must be 1..{KEY_MAX} characters",
            field="Idempotency-Key",
            code="invalid_idempotency_key",
        )
    body = await request.body() if idempotency_key is not None else b""
    return Idempotency(session, principal, request, idempotency_key, body)


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]
