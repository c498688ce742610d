"""Cursor (keyset) pagination: opaque cursors that encode the last key seen.

Lists are ordered by a unique key; ``cursor`` is the base64url JSON of the last
key of the previous page. Cursors never skip or repeat rows under inserts.
:func:`cursor_key` types a compound key on the way back in, so every list checks its
cursor the same way and a cursor from one list handed to another is a 422
``invalid_cursor``, not a 500; :func:`page` cuts a page and makes the next cursor.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from ledger.errors import ValidationFailed

T = TypeVar("T")

LIMIT_DEFAULT = 50
LIMIT_MAX = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; null on the last page."
    )


def encode_cursor(key: Any) -> str:
    raw = json.dumps(key, default=str, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, json.JSONDecodeError):
        raise ValidationFailed(
            "the cursor is not one we issued; pass the `next_cursor` of the previous page",
            field="cursor",
            code="invalid_cursor",
        ) from None


def check_limit(limit: int) -> int:
    if limit < 1 or limit > LIMIT_MAX:
        raise ValidationFailed(
            f"limit must be between 1 and {LIMIT_MAX}", field="limit", code="invalid_limit"
        )
    return limit


KeyPart = type[uuid.UUID] | type[datetime] | type[str] | type[int]


def _invalid() -> ValidationFailed:
    return ValidationFailed(
        "the cursor is not one this list issued; pass the `next_cursor` of its previous page",
        field="cursor",
        code="invalid_cursor",
    )


def _part(kind: KeyPart, value: Any) -> Any:
    if kind is int:
        if type(value) is not int:
            raise _invalid()
        return value
    if not isinstance(value, str) or "\x00" in value:
        raise _invalid()
    try:
        if kind is uuid.UUID:
            return uuid.UUID(value)
        if kind is datetime:
            moment = datetime.fromisoformat(value)
            if moment.utcoffset() is None:
                raise _invalid()
            return moment
    except ValueError:
        raise _invalid() from None
    return value


def cursor_key(cursor: str | None, *parts: KeyPart) -> Any:
    """The typed key in ``cursor`` (a tuple for several parts, the value for one), or None
    for the first page. Raises ValidationFailed ``invalid_cursor``."""
    raw = decode_cursor(cursor)
    if raw is None:
        return None
    values = raw if len(parts) > 1 else [raw]
    if not isinstance(values, list) or len(values) != len(parts):
        raise _invalid()
    typed = tuple(_part(kind, value) for kind, value in zip(parts, values, strict=True))
    return typed if len(parts) > 1 else typed[0]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def page(rows: Sequence[T], limit: int, key: Callable[[T], Any]) -> tuple[list[T], str | None]:
    """The first ``limit`` of ``rows`` (fetched with ``limit + 1``) and the cursor of the next
    page, None on the last page."""
    items = list(rows[:limit])
    if len(rows) <= limit:
        return items, None
    last = key(items[-1])
    plain = [_plain(v) for v in last] if isinstance(last, tuple) else _plain(last)
    return items, encode_cursor(plain)
