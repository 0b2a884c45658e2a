"""The codec's two decoders agree (R20): whatever the bytes, ``decode_event`` (msgspec
fast path, falling back to the reference) returns what ``decode_reference`` (orjson and
the hand-written checks, the definition) returns: the same event, field for field, or
the same reason and detail. And the fast path does take the valid events it is for.

The generated records aim at where the two parsers could read JSON differently:
duplicate fields, escaped field names, integers beyond 64 bits, floats for integers,
null for booleans, invalid UTF-8, lone surrogates, unknown fields of any shape.
About 3,500 records, ~20 s.
"""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from worker import codec
from worker.codec import (BAD_FIELD, DEFAULT_FUTURE_SKEW_MS, DEFAULT_MAX_BYTES, Reject,
                          decode_event, decode_reference)
from worker.domain import Event
from worker.event_wire import decode_wire

from tests.property.test_codec_fuzz import (FUZZ, NOW, REQUIRED, json_values, key_of,
                                           valid_events, wrong_values)

FIELDS = REQUIRED + ("developer", "intent", "input_valid", "action", "auth_profile", "dialog",
                     "tags", "sentiment", "variables")


def outcome(result) -> tuple:
    if type(result) is Reject:
        return ("reject", result.reason, result.detail)
    assert type(result) is Event, result
    variables = [(v.name, v.value, v.ttl_s, v.delete, v.auth_profile)
                 for v in result.variables] if result.variables is not None else None
    return ("event", result.event_id, result.app_id, result.user_id, result.ts, result.type,
            result.channel, result.developer, result.key, result.intent, result.input_valid,
            result.action, result.auth_profile, result.has_dialog, result.dialog,
            result.tags, result.sentiment, variables)


def assert_agree(key: bytes | None, value: bytes) -> tuple:
    assert len(value) + (len(key) if key else 0) <= DEFAULT_MAX_BYTES   # not a too_large test
    fast = outcome(decode_event(key, value, NOW))
    reference = outcome(decode_reference(key, value, NOW, DEFAULT_FUTURE_SKEW_MS))
    assert fast == reference, (key, value)
    return fast


def object_text(pairs: list[tuple[str, object]], escape: bool) -> bytes:
    """A JSON object written field by field: duplicates kept, names \\u-escaped if asked."""
    def name(k: str) -> str:
        if escape and k:
            return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c for c in k) + '"'
        return json.dumps(k)
    return ("{" + ",".join(f"{name(k)}:{json.dumps(v)}" for k, v in pairs) + "}").encode()


@settings(FUZZ, max_examples=800)
@given(ev=valid_events(), extra=st.dictionaries(st.text(max_size=10), json_values, max_size=3),
       ascii_only=st.booleans())
def test_valid_events_decode_the_same_on_both_paths_R20(ev, extra, ascii_only):
    value = json.dumps({**extra, **ev}, ensure_ascii=ascii_only).encode()
    assert_agree(key_of(ev), value)


@settings(FUZZ, max_examples=800)
@given(ev=valid_events(), field=st.sampled_from(FIELDS),
       bad=wrong_values | st.integers(2**63 - 5, 2**70))
def test_one_wrong_field_gives_the_same_answer_on_both_paths_R20(ev, field, bad):
    assert_agree(key_of(ev), json.dumps({**ev, field: bad}).encode())


@settings(FUZZ, max_examples=800)
@given(ev=valid_events(), data=st.data(), escape=st.booleans())
def test_duplicate_and_escaped_field_names_read_alike_R20(ev, data, escape):
    pairs = list(ev.items())
    for _ in range(data.draw(st.integers(0, 3), "duplicates")):
        field = data.draw(st.sampled_from(FIELDS), "field")
        value = data.draw(wrong_values | st.sampled_from([ev.get(field), True, 0, "x"]), "value")
        pairs.insert(data.draw(st.integers(0, len(pairs)), "at"), (field, value))
    assert_agree(key_of(ev), object_text(pairs, escape))


@settings(FUZZ, max_examples=800)
@given(ev=valid_events(), cut=st.integers(0, 400), junk=st.binary(min_size=1, max_size=4))
def test_damaged_bytes_give_the_same_answer_on_both_paths_R20(ev, cut, junk):
    value = json.dumps(ev, ensure_ascii=False).encode()
    cut = min(cut, len(value))
    assert_agree(key_of(ev), value[:cut] + junk + value[cut:])


@settings(FUZZ, max_examples=300)
@given(ev=valid_events())
def test_the_fast_path_takes_every_valid_event_but_context_R20(ev):
    """Not a tautology of the tests above: the fast path must accept valid records by
    itself, not hand them all to the reference."""
    value = json.dumps(ev).encode()
    taken = codec._accept(decode_wire(value), key_of(ev), NOW + DEFAULT_FUTURE_SKEW_MS)
    if ev["type"] == "context":
        assert taken is None
    else:
        assert outcome(taken) == outcome(decode_reference(key_of(ev), value, NOW))


BASE = {"event_id": "e1", "app_id": "a", "user_id": "u", "ts": 5, "type": "user_message",
        "channel": "web"}


def test_integers_beyond_64_bits_are_read_alike_R20():
    # msgspec keeps 2**70 as an int, orjson reads it as a float: both say bad_field
    for ts in (2**64, 2**70, 10**30):
        value = object_text([*BASE.items(), ("ts", ts)], escape=False)
        assert assert_agree(b"a:u", value)[:2] == ("reject", BAD_FIELD)


def test_an_on_connect_action_that_is_not_a_string_is_a_bad_field_not_a_crash_R20():
    for action in (["run_script"], {"a": 1}, 3, None):
        ev = {**BASE, "type": "on_connect", "action": action}
        got = assert_agree(b"a:u", json.dumps(ev).encode())
        assert got[0] == "reject" and got[1] in ("bad_field", "missing_field"), got


def test_lone_surrogates_and_invalid_utf8_are_not_json_on_both_paths_R20():
    for value in (b'{"event_id":"\\ud800","app_id":"a"}', b'{"event_id":"\xff"}'):
        assert assert_agree(b"a:u", value)[:2] == ("reject", "not_json")
