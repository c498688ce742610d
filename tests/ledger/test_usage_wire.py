"""Usage request bodies: JSON arrays and NDJSON streams decoded into raw events."""

from __future__ import annotations

import sys

import pytest

from ledger.errors import PayloadTooLarge, ValidationFailed
from ledger.usage import wire
from ledger.usage.schemas import BATCH_EVENTS_MAX, DuplicateKeys


def test_a_json_array_marks_objects_with_repeated_keys() -> None:
    events = wire.json_array(b'[{"a": 1, "b": {"c": 1, "c": 2}}, {"a": 1, "a": 2}]')
    assert type(events[0]) is dict and isinstance(events[0]["b"], DuplicateKeys)
    assert events[0]["b"].duplicate_key == "c" and events[0]["b"] == {"c": 2}
    assert isinstance(events[1], DuplicateKeys) and events[1].duplicate_key == "a"
    assert wire.duplicate_key_path(events) == "0/b/c"


@pytest.mark.parametrize(
    ("body", "error", "fragment"),
    [
        (b'[{"a": ', wire.MalformedBody, "not valid JSON"),
        (b"[NaN]", wire.MalformedBody, "NaN is not a JSON value"),
        (b'["\xff"]', wire.MalformedBody, "not UTF-8"),
        (b"[" * 100_000, wire.MalformedBody, "nested too deeply"),
        (b'{"events": []}', ValidationFailed, "JSON array of events"),
    ],
)
def test_bad_json_bodies(body: bytes, error: type[Exception], fragment: str) -> None:
    previous = wire.cap_recursion_limit()  # as the server does (py_ecc raised it)
    try:
        with pytest.raises(error, match=fragment):
            wire.json_array(body)
    finally:
        sys.setrecursionlimit(previous)


def test_too_many_events() -> None:
    with pytest.raises(PayloadTooLarge, match=str(BATCH_EVENTS_MAX)):
        wire.json_array(b"[" + b",".join([b"{}"] * (BATCH_EVENTS_MAX + 1)) + b"]")
    decoder = wire.NdjsonDecoder()
    with pytest.raises(PayloadTooLarge):
        decoder.feed(b"{}\n" * (BATCH_EVENTS_MAX + 1))


def test_ndjson_lines_may_be_cut_anywhere() -> None:
    body = b'{"n": 1}\n\n{"n": 2}\r\n  \n{"n": "\xc3\xa9"}'
    for size in (1, 2, 3, 7, len(body)):
        decoder = wire.NdjsonDecoder()
        for start in range(0, len(body), size):
            decoder.feed(body[start : start + size])
        decoder.finish()
        assert decoder.events == [{"n": 1}, {"n": 2}, {"n": "é"}]
        assert decoder.rejected == {}


def test_a_bad_ndjson_line_is_one_rejected_event() -> None:
    decoder = wire.NdjsonDecoder()
    decoder.feed(b'{"n": 1}\n{"n": \n\n\xff\xfe\n{"n": 2, "n": 3}\n')
    decoder.finish()
    assert decoder.events[0] == {"n": 1}
    assert decoder.events[1] == {"unparsed_line": '{"n": '}
    assert decoder.events[2] == {"unparsed_line": "\ufffd\ufffd"}
    assert isinstance(decoder.events[3], DuplicateKeys)
    assert sorted(decoder.rejected) == [1, 2]
    assert decoder.rejected[1].code == "malformed_json"
    assert "line 2 of the NDJSON body" in decoder.rejected[1].message
    assert "line 4" in decoder.rejected[2].message and "not UTF-8" in decoder.rejected[2].message
