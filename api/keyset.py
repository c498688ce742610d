"""Compound cursors for keyset pagination: a cursor is the sort key of a page's last row.

``api.pagination`` encodes any JSON value; this module types a compound key both ways,
so every list checks its cursor the same way and a cursor from one list handed to
another is a 422 ``invalid_cursor``, not a 500.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from api.pagination import decode_cursor, encode_cursor
from ledger.errors import ValidationFailed

T = TypeVar("T")
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
