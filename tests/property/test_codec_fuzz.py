"""Fuzzing the codec (R19, R20): whatever bytes arrive, ``decode_event`` and
``decode_settings`` never raise; they return an ``Event`` or a ``Reject`` whose reason is
one of R20's; a mutated record is rejected with the reason its mutation calls for, and a
mutated-but-valid record (unknown extra fields, optional fields, many variables within
the size limit) is accepted.

About 10,700 generated records in total (``max_examples`` per test below), ~45 s.
"""
from __future__ import annotations

import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from worker.codec import (BAD_FIELD, BAD_SETTINGS, DEFAULT_FUTURE_SKEW_MS, DEFAULT_MAX_BYTES,
                          KEY_MISMATCH, MISSING_FIELD, NOT_JSON, NOT_OBJECT, REASONS,
                          TOO_LARGE, UNKNOWN_TYPE, Reject, decode_event, decode_settings)
from worker.domain import CoreConfig, Event
from worker.domain.events import EVENT_TYPES
from worker.domain.settings import AppSettings

NOW = 1_764_000_000_000
CFG = CoreConfig()
EVENT_REASONS = set(REASONS) - {BAD_SETTINGS}
FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)

REQUIRED = ("event_id", "app_id", "user_id", "ts", "type", "channel")

json_scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=5)
                           | st.dictionaries(st.text(max_size=12), kids, max_size=6),
                           max_leaves=6)
wrong_values = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
                | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=5) | st.lists(json_scalars, max_size=3)
                | st.dictionaries(st.text(max_size=4), json_scalars, max_size=3))
ident = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


def _dumps(obj) -> bytes:
    """Any JSON text, big integers included (orjson cannot write them)."""
    return json.dumps(obj, ensure_ascii=False).encode()


def _check_event(result) -> None:
    assert type(result) in (Event, Reject), result
    if type(result) is Reject:
        assert result.reason in EVENT_REASONS, result
        assert isinstance(result.detail, str) and result.detail


def _check_settings(result) -> None:
    if type(result) is Reject:
        assert result.reason == BAD_SETTINGS, result
    else:
        app_id, s = result
        assert isinstance(app_id, str) and (s is None or isinstance(s, AppSettings))


def _decode(key, value):
    return decode_event(key, value, NOW)


@st.composite
def valid_events(draw) -> dict:
    etype = draw(st.sampled_from(sorted(EVENT_TYPES)))
    ev = {"event_id": draw(ident), "app_id": draw(ident.filter(lambda s: ":" not in s)),
          "user_id": draw(ident), "ts": draw(st.integers(1, NOW + DEFAULT_FUTURE_SKEW_MS)),
          "type": etype, "channel": draw(st.text(min_size=1, max_size=64))}
    if draw(st.booleans()):
        ev["developer"] = draw(st.booleans())
    if etype in ("user_message", "on_connect"):
        ev["intent"] = draw(st.none() | st.text(max_size=20))
    if etype == "user_message" and draw(st.booleans()):
        ev["input_valid"] = draw(st.booleans())
    if etype == "on_connect":
        ev["action"] = draw(st.sampled_from(["run_script", "run_message", "trigger_dialog"]))
    if etype == "auth":
        ev["auth_profile"] = draw(st.text(min_size=1, max_size=20))
    if etype == "context":
        if draw(st.booleans()):
            ev["dialog"] = draw(st.none() | st.dictionaries(st.text(max_size=5), json_scalars,
                                                              max_size=3))
        if draw(st.booleans()):
            ev["tags"] = draw(st.lists(st.text(max_size=8), max_size=5))
        if draw(st.booleans()):
            ev["sentiment"] = draw(st.dictionaries(st.text(max_size=6),
                                                   st.integers(-9, 9) | st.floats(-1, 1),
                                                   max_size=4))
        if draw(st.booleans()):
            ev["variables"] = draw(st.lists(st.fixed_dictionaries(
                {"name": st.text(min_size=1, max_size=20), "value": json_values},
                optional={"ttl_s": st.integers(1, 10**9), "delete": st.booleans(),
                          "auth_profile": st.text(min_size=1, max_size=10)}), max_size=6))
    return ev


def key_of(ev: dict) -> bytes:
    return f"{ev['app_id']}:{ev['user_id']}".encode()


# -- random bytes and random JSON -----------------------------------------------------------
@settings(FUZZ, max_examples=2_500)
@given(key=st.none() | st.binary(max_size=40), value=st.none() | st.binary(max_size=300))
def test_random_bytes_never_raise(key, value):
    _check_event(_decode(key, value))
    _check_settings(decode_settings(key, value, CFG))


@settings(FUZZ, max_examples=1_500)
@given(key=st.none() | st.text(max_size=30).map(str.encode), obj=json_values)
def test_random_json_never_raises(key, obj):
    value = _dumps(obj)
    result = _decode(key, value)
    _check_event(result)
    if type(obj) is not dict:
        assert type(result) is Reject and result.reason == NOT_OBJECT
    _check_settings(decode_settings(key, value, CFG))


@settings(FUZZ, max_examples=1_500)
@given(obj=st.dictionaries(st.sampled_from(REQUIRED + ("developer", "intent", "action",
                                                       "variables", "tags", "dialog")),
                           wrong_values, max_size=10),
       key=st.none() | st.binary(max_size=20))
def test_random_objects_with_event_field_names_never_raise(obj, key):
    _check_event(_decode(key, _dumps(obj)))


# -- valid events, one field mutated --------------------------------------------------------------
@settings(FUZZ, max_examples=1_000)
@given(ev=valid_events(), extra=st.dictionaries(st.text(max_size=10).filter(
    lambda k: k not in Event.OPTIONAL and k not in REQUIRED and k not in (
        "developer", "input_valid")), json_values, max_size=4))
def test_valid_events_with_unknown_fields_are_accepted(ev, extra):
    value = _dumps({**extra, **ev})
    assume(len(value) + len(key_of(ev)) <= DEFAULT_MAX_BYTES)
    result = _decode(key_of(ev), value)
    assert type(result) is Event, result
    assert (result.event_id, result.ts, result.type) == (ev["event_id"], ev["ts"], ev["type"])


@settings(FUZZ, max_examples=1_500)
@given(ev=valid_events(), field=st.sampled_from(REQUIRED), data=st.data())
def test_required_field_missing_or_wrong_type(ev, field, data):
    mutated = dict(ev)
    if data.draw(st.booleans(), "drop"):
        del mutated[field]
        want = {MISSING_FIELD}
    else:
        bad = data.draw(wrong_values, "value")
        good_type = int if field == "ts" else str
        assume(not (type(bad) is good_type))
        mutated[field] = bad
        want = {MISSING_FIELD} if bad is None else {BAD_FIELD}
    result = _decode(key_of(ev), _dumps(mutated))
    _check_event(result)
    assert type(result) is Reject and result.reason in want, (field, mutated, result)


@settings(FUZZ, max_examples=1_500)
@given(ev=valid_events(), data=st.data())
def test_mutations_get_their_reason(ev, data):
    kind = data.draw(st.sampled_from(["unknown_type", "key_mismatch", "far_future", "huge",
                                      "bad_ts", "empty_id", "long_id", "bad_developer"]))
    key = key_of(ev)
    m = dict(ev)
    if kind == "unknown_type":
        m["type"] = data.draw(st.text(max_size=20).filter(lambda t: t not in EVENT_TYPES))
        want = UNKNOWN_TYPE
    elif kind == "key_mismatch":
        key = data.draw(st.none() | st.binary(max_size=30).filter(lambda k: k != key))
        want = KEY_MISMATCH
    elif kind == "far_future":
        m["ts"] = NOW + DEFAULT_FUTURE_SKEW_MS + data.draw(st.integers(1, 2**62))
        want = BAD_FIELD
    elif kind == "huge":
        m["pad"] = "x" * DEFAULT_MAX_BYTES
        want = TOO_LARGE
    elif kind == "bad_ts":
        m["ts"] = data.draw(st.integers(-2**62, 0) | st.floats(1, 1e13) | st.just(True))
        want = BAD_FIELD
    elif kind == "empty_id":
        m["event_id"] = ""
        want = BAD_FIELD
    elif kind == "long_id":
        m["event_id"] = "e" * data.draw(st.integers(129, 5_000))
        want = BAD_FIELD
    else:
        m["developer"] = data.draw(wrong_values.filter(lambda v: type(v) is not bool))
        want = BAD_FIELD
    result = _decode(key, _dumps(m))
    assert type(result) is Reject and result.reason == want, (kind, m, key, result)


@settings(FUZZ, max_examples=200)
@given(n=st.integers(0, 2_000), size=st.integers(0, 200), data=st.data())
def test_many_or_huge_variables(n, size, data):
    """Variables within the size limit are accepted however many; past it, too_large;
    a broken variable anywhere is bad_field."""
    ev = {"event_id": "e", "app_id": "a", "user_id": "u", "ts": NOW, "type": "context",
          "channel": "web",
          "variables": [{"name": f"v{i}", "value": "x" * size} for i in range(n)]}
    broken = n > 0 and data.draw(st.booleans())
    if broken:
        i = data.draw(st.integers(0, n - 1))
        ev["variables"][i] = data.draw(st.sampled_from(
            [{"name": ""}, {"name": 5}, {"name": "v", "ttl_s": 0}, {"name": "v", "ttl_s": "1"},
             {"name": "v", "delete": "yes"}, {"name": "v", "auth_profile": ""}, "v", None]))
    value = _dumps(ev)
    result = _decode(b"a:u", value)
    if len(value) + 3 > DEFAULT_MAX_BYTES:
        assert type(result) is Reject and result.reason == TOO_LARGE
    elif broken:
        assert type(result) is Reject and result.reason == BAD_FIELD, result
    else:
        assert type(result) is Event and len(result.variables or []) == n


@settings(FUZZ, max_examples=1_500)
@given(app=ident, obj=st.fixed_dictionaries({}, optional={
    "mode": st.sampled_from(["proactive", "legacy", "continue_on_same_intent"]) | wrong_values,
    "inactivity_minutes": st.integers(-5, 30_000) | wrong_values,
    "clear_auth_profiles": st.booleans() | wrong_values,
    "closure": st.fixed_dictionaries({}, optional={
        "behavior": st.sampled_from(["none", "message", "dialog"]) | wrong_values,
        "message": st.text(max_size=30) | wrong_values,
        "channels": st.lists(st.text(max_size=8), max_size=3) | wrong_values}) | wrong_values,
    "close_script": st.text(max_size=60) | wrong_values,
    "app_id": ident | wrong_values}),
       raw=st.booleans())
def test_settings_never_raise(app, obj, raw):
    key = app.encode()
    value = _dumps(obj) if raw else _dumps({**obj, "app_id": app})
    _check_settings(decode_settings(key, value, CFG))
    _check_settings(decode_settings(key, None, CFG))          # tombstone
    assert decode_settings(None, value, CFG).reason == BAD_SETTINGS


def test_not_json_and_none():
    assert decode_event(b"a:u", None, NOW).reason == NOT_JSON
    assert decode_event(b"a:u", b"\xff\xfe{", NOW).reason == NOT_JSON
    assert decode_settings(b"a", b"{", CFG).reason == BAD_SETTINGS
