"""The fast lane for retrieval batches (``ledger.usage.compact``) must never decide
differently from the strict path: whatever it takes, the strict path takes too, with
the same validated events; anything doubtful it leaves to the strict path."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.sdk.batching import retrieval_event
from api.sdk.routes import encode_json
from ledger.usage import wire
from ledger.usage.compact import decode_retrievals, payload_json
from ledger.usage.schemas import EventRejected, parse_retrieval

DATASETS = [str(uuid.UUID(int=i * 7_919 + 1)) for i in range(4)]


def mostly(valid: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` nine times in ten, else ``odd``: batches must often be clean for the
    fast lane to be exercised at all."""
    return st.integers(0, 9).flatmap(lambda i: odd if i == 0 else valid)


ids = mostly(
    st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12),
    st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "a" * 201, "tab\there", "é"])),
)
times = mostly(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    ).map(lambda t: t.isoformat().replace("+00:00", "Z")),
    st.sampled_from(["2026-01-01T00:00:00", "2026-13-01T00:00:00Z", "yesterday", 7]),
)
scores = mostly(
    st.one_of(st.none(), st.floats(0, 1)),
    st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-3, 3), st.just("0.5")),
)


@st.composite
def chunks(draw: st.DrawFn, position: int) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "dataset_id": draw(
            mostly(
                st.sampled_from(DATASETS),
                st.one_of(st.sampled_from(DATASETS).map(str.upper), st.just("not-a-uuid")),
            )
        ),
        "chunk_id": draw(ids),
        "rank": draw(mostly(st.just(position), st.one_of(st.integers(-1, 4), st.just(True)))),
    }
    score = draw(scores)
    if score is not None or draw(st.integers(0, 9)) == 0:
        chunk["score"] = score
    if draw(st.integers(0, 19)) == 0:
        chunk["extra"] = 1
    return chunk


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(mostly(st.integers(1, 3), st.just(0)))
    event: dict[str, Any] = {
        "event_id": draw(ids),
        "query_id": draw(ids),
        "occurred_at": draw(times),
        "chunks": [draw(chunks(position)) for position in range(1, count + 1)],
    }
    if draw(st.integers(0, 19)) == 0:
        del event[draw(st.sampled_from(sorted(event)))]
    return event


def compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


ENCODERS = {
    "sdk": encode_json,
    "orjson": orjson.dumps,
    "compact, raw UTF-8": compact_json,
    "spaced": lambda v: json.dumps(v).encode(),
}


def strict(body: bytes) -> list[Any]:
    """The strict path's verdict per event: the validated event or the rejection code."""
    outcome: list[Any] = []
    for raw in wire.json_array(body):
        try:
            outcome.append(parse_retrieval(raw))
        except EventRejected as error:
            outcome.append(error.code)
    return outcome


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(events(), min_size=1, max_size=3), encoder=st.sampled_from(sorted(ENCODERS)))
def test_fast_lane_agrees_with_the_strict_path(batch: list[dict[str, Any]], encoder: str) -> None:
    body = ENCODERS[encoder](batch)
    decoded = decode_retrievals(body)
    if decoded is None:
        return  # the strict path decides alone
    received, parsed = decoded
    assert strict(body) == parsed
    # What goes to quarantine as "received" is the event as the client sent it.
    assert [json.loads(payload_json(r)) for r in received] == json.loads(body)


def sdk_batch(count: int) -> list[dict[str, Any]]:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    return [
        retrieval_event(
            f"q-{n}",
            [(DATASETS[n % 4], f"doc-{n}#{r}", 1.0 - r / 10) for r in range(5)],
            occurred_at=start + timedelta(seconds=n, microseconds=n),
            event_id=f"e-{n}",
        )
        for n in range(count)
    ]


def test_what_the_sdk_sends_takes_the_fast_lane() -> None:
    body = encode_json(sdk_batch(200))
    decoded = decode_retrievals(body)
    assert decoded is not None
    assert decoded[1] == strict(body)


@pytest.mark.parametrize(
    ("name", "mangle"),
    [
        (
            "a repeated key in an event",
            lambda b: b.replace(b'"query_id"', b'"event_id":"x","query_id"', 1),
        ),
        ("a repeated key in a chunk", lambda b: b.replace(b'"rank":1', b'"rank":1,"rank":1', 1)),
        ("an escaped character", lambda b: b.replace(b"q-0", b"q\\u002d0", 1)),
        ("whitespace", lambda b: b.replace(b",", b", ", 1)),
        ("UTC spelled +00:00", lambda b: b.replace(b'Z"', b'+00:00"', 1)),
        ("an integer score", lambda b: b.replace(b'"score":1.0', b'"score":1', 1)),
        ("no array", lambda b: b[1:-1]),
        ("an empty array", lambda b: b"[]"),
    ],
)
def test_anything_doubtful_goes_the_strict_way(name: str, mangle: Any) -> None:
    body = mangle(encode_json(sdk_batch(3)))
    assert decode_retrievals(body) is None, name


def test_more_events_than_a_batch_holds_go_the_strict_way() -> None:
    one = sdk_batch(1)[0]
    body = msgspec.json.encode([one] * (wire.BATCH_EVENTS_MAX + 1))
    assert decode_retrievals(body) is None
