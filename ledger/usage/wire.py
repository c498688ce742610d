"""Usage batches as they arrive over the wire: a JSON array of events, or NDJSON (one
event per line), decoded into raw events for :mod:`ledger.usage.service`.

- A JSON object that repeats a key becomes a :class:`~ledger.usage.schemas.DuplicateKeys`
  (validation rejects the event naming the key; plain JSON parsers keep the last value
  silently).
- ``NaN``/``Infinity`` are not JSON: they make the body (or the NDJSON line) malformed.
- A JSON array body is all or nothing: malformed JSON raises :class:`MalformedBody`.
- NDJSON is decoded line by line as it streams in (no copy of the whole body is
  built): a malformed line becomes a rejected event of its own (code ``malformed_json``,
  the line number and parser message in the message); blank lines are skipped and do
  not count as events.
- More than ``BATCH_EVENTS_MAX`` events raise ``PayloadTooLarge`` (for NDJSON as soon
  as the line after the limit arrives).
- Nesting deeper than the interpreter's recursion limit is malformed. The C decoder
  recurses on the C stack: a server must keep that limit at ``JSON_RECURSION_LIMIT``
  or below (``py_ecc``, imported through web3, raises it to 100,000 at import, deep
  enough for a 100 kB body of ``[[[[…`` to crash the process); see
  :func:`cap_recursion_limit`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, Final

from ledger.errors import DomainError, PayloadTooLarge, ValidationFailed
from ledger.usage.schemas import BATCH_EVENTS_MAX, DuplicateKeys, EventRejected

MEDIA_JSON: Final = "application/json"
MEDIA_NDJSON: Final = "application/x-ndjson"
# The text of a malformed line kept in quarantine, at most.
UNPARSED_CHARS_MAX: Final = 10_000
# Deepest nesting the C decoder may reach: safe on 8 MiB thread stacks (measured: a
# limit of 20,000 still raises RecursionError; 100,000 crashes).
JSON_RECURSION_LIMIT: Final = 4_000


def cap_recursion_limit() -> int:
    """Lower the interpreter's recursion limit to JSON_RECURSION_LIMIT if it is above;
    returns the previous limit (to restore)."""
    previous = sys.getrecursionlimit()
    if previous > JSON_RECURSION_LIMIT:
        sys.setrecursionlimit(JSON_RECURSION_LIMIT)
    return previous


class MalformedBody(DomainError):
    """The request body is not valid JSON (or not UTF-8)."""

    code = "malformed_json"
    http_status = 400
    title = "Malformed JSON"


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked = DuplicateKeys(obj)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            marked.duplicate_key = key
            break
        seen.add(key)
    return marked


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value (numbers must be finite)")


_DECODER: Final = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_not_json)


def loads(text: str) -> Any:
    """Strict JSON: duplicate keys marked, no NaN/Infinity; raises ValueError."""
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def too_many(count: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"a request carries at most {BATCH_EVENTS_MAX} events, got {count}"
        f"{' or more' if count == BATCH_EVENTS_MAX + 1 else ''}; split it into several requests",
        field="events",
        code="too_many_events",
        details={"max_events": BATCH_EVENTS_MAX},
    )


def json_array(body: bytes) -> list[Any]:
    """The events of a JSON array body; raises MalformedBody, ValidationFailed (not an
    array) or PayloadTooLarge."""
    try:
        value = loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise MalformedBody(
            f"the request body is not UTF-8 (byte {error.start}); send UTF-8 JSON",
            field="body",
        ) from None
    except ValueError as error:
        raise MalformedBody(f"the request body is not valid JSON: {error}", field="body") from None
    if type(value) is not list:
        raise ValidationFailed(
            "the body must be a JSON array of events (or NDJSON, one event per line, with "
            f"Content-Type: {MEDIA_NDJSON})",
            field="body",
            code="invalid_type",
        )
    if len(value) > BATCH_EVENTS_MAX:
        raise too_many(len(value))
    return value


@dataclass
class NdjsonDecoder:
    """Feed the body in pieces (:meth:`feed`), then :meth:`finish`. ``events`` holds one
    raw event per non-blank line; ``rejected`` the malformed lines by event index."""

    events: list[Any] = field(default_factory=list)
    rejected: dict[int, EventRejected] = field(default_factory=dict)
    _pending: list[bytes] = field(default_factory=list)  # a line not yet complete
    _line_number: int = 0

    def feed(self, piece: bytes) -> None:
        end = piece.rfind(b"\n")
        if end < 0:
            self._pending.append(piece)
            return
        block = piece[: end + 1]
        if self._pending:
            block = b"".join([*self._pending, block])
            self._pending.clear()
        if end + 1 < len(piece):
            self._pending.append(piece[end + 1 :])
        self._lines(block)

    def finish(self) -> NdjsonDecoder:
        if self._pending:
            self._lines(b"".join(self._pending))
            self._pending.clear()
        return self

    def _lines(self, block: bytes) -> None:
        try:
            lines: list[str] | list[bytes] = block.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            lines = block.split(b"\n")  # decoded one by one, to find the bad line
        if lines and not lines[-1]:
            lines.pop()  # the newline ending the block
        events, decode = self.events, _DECODER.decode
        for line in lines:
            self._line_number += 1
            if not line.strip():
                continue
            if len(events) >= BATCH_EVENTS_MAX:
                raise too_many(BATCH_EVENTS_MAX + 1)
            try:
                text = line if type(line) is str else line.decode("utf-8")  # type: ignore[union-attr]
                events.append(decode(text))
            except (ValueError, RecursionError) as error:
                self._malformed(line, error)

    def _malformed(self, line: str | bytes, error: Exception) -> None:
        text = line if isinstance(line, str) else line.decode("utf-8", "replace")
        if isinstance(error, UnicodeDecodeError):
            reason = f"it is not UTF-8 (byte {error.start})"
        elif isinstance(error, RecursionError):
            reason = "it is nested too deeply"
        else:
            reason = f"it is not valid JSON: {error}"
        self.rejected[len(self.events)] = EventRejected(
            "",
            "malformed_json",
            f"line {self._line_number} of the NDJSON body is not an event: {reason}; "
            "send one JSON object per line",
        )
        self.events.append({"unparsed_line": text[:UNPARSED_CHARS_MAX]})


def duplicate_key_path(value: Any, prefix: str = "") -> str | None:
    """The path of the first repeated key in a decoded JSON value, or None."""
    if isinstance(value, DuplicateKeys):
        return f"{prefix}{value.duplicate_key}"
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = duplicate_key_path(item, f"{prefix}{key}/")
        if found is not None:
            return found
    return None
