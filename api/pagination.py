"""Cursor pagination: opaque cursors that encode the last key seen.

Lists are ordered by a unique key; ``cursor`` is the base64url JSON of the last
key of the previous page. Cursors never skip or repeat rows under inserts.
"""

from __future__ import annotations

import base64
import json
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
