"""Bytes in, bytes out (R19, R20): the only place that parses or writes JSON.

``decode_event`` validates a raw ``conversation-events`` record by hand (no JSON Schema
on the hot path) into a domain ``Event`` or a ``Reject`` with a reason code of R20.
``decode_settings`` does the same for ``session-settings`` (every rejection is
``bad_settings``). Outputs are encoded with orjson.
"""
from __future__ import annotations

import base64
import sys
from typing import Final

import orjson

from .domain.config import CoreConfig
from .domain.events import EVENT_TYPES, ON_CONNECT_ACTIONS, Event, Variable
from .domain.settings import AppSettings, SettingsError, parse_settings
from .event_wire import WIRE_ERRORS, WireEvent, decode_wire

NOT_JSON: Final = "not_json"
NOT_OBJECT: Final = "not_object"
MISSING_FIELD: Final = "missing_field"
BAD_FIELD: Final = "bad_field"
UNKNOWN_TYPE: Final = "unknown_type"
KEY_MISMATCH: Final = "key_mismatch"
TOO_LARGE: Final = "too_large"
BAD_SETTINGS: Final = "bad_settings"
REASONS: Final = (NOT_JSON, NOT_OBJECT, MISSING_FIELD, BAD_FIELD, UNKNOWN_TYPE, KEY_MISMATCH,
           TOO_LARGE, BAD_SETTINGS)

DEFAULT_MAX_BYTES: Final = 64 * 1024
DEFAULT_FUTURE_SKEW_MS: Final = 3_600_000

_intern: Final = sys.intern
_loads: Final = orjson.loads
_JSONDecodeError: Final = orjson.JSONDecodeError
_TYPE_NAMES: Final = {name: _intern(name) for name in EVENT_TYPES}
_decode_wire: Final = decode_wire
_WIRE_ERRORS: Final = WIRE_ERRORS


class Reject:
    """A record the worker will not apply: goes to the dead-letter topic (R20)."""

    __slots__ = ("reason", "detail")

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail

    def __repr__(self) -> str:
        return f"Reject({self.reason}: {self.detail})"


def _check_str(obj: dict, name: str, hi: int) -> Reject | None:
    value = obj.get(name)
    if value is None:
        return Reject(MISSING_FIELD, f"{name} is required")
    if type(value) is not str or not 1 <= len(value) <= hi:
        return Reject(BAD_FIELD, f"{name} must be a string of 1..{hi} characters")
    return None


def _diagnose_required(obj: dict) -> Reject:
    """Slow path: the first problem among the required fields, in a fixed order."""
    for name, hi in (("event_id", 128), ("app_id", 256), ("user_id", 256)):
        rejected = _check_str(obj, name, hi)
        if rejected is not None:
            return rejected
    if ":" in obj["app_id"]:
        # the record key app_id:user_id would be ambiguous: ("a", "b:c") vs ("a:b", "c")
        return Reject(BAD_FIELD, "app_id must not contain ':' (the key app_id:user_id would be ambiguous)")
    ts = obj.get("ts")
    if ts is None:
        return Reject(MISSING_FIELD, "ts is required")
    if type(ts) is not int or ts <= 0:
        return Reject(BAD_FIELD, "ts must be a positive integer (epoch ms)")
    etype = obj.get("type")
    if etype is None:
        return Reject(MISSING_FIELD, "type is required")
    if type(etype) is not str:
        return Reject(BAD_FIELD, "type must be a string")
    if etype not in EVENT_TYPES:
        return Reject(UNKNOWN_TYPE, f"unknown event type {etype[:64]!r}")
    rejected = _check_str(obj, "channel", 64)
    if rejected is not None:
        return rejected
    raise AssertionError("required fields are valid")  # pragma: no cover


def _variables(raw) -> list[Variable] | Reject:
    if type(raw) is not list:
        return Reject(BAD_FIELD, "variables must be an array")
    out = []
    for item in raw:
        if type(item) is not dict:
            return Reject(BAD_FIELD, "each variable must be an object")
        name = item.get("name")
        if type(name) is not str or not 1 <= len(name) <= 256:
            return Reject(BAD_FIELD, "variable name must be a string of 1..256 characters")
        ttl = item.get("ttl_s")
        if ttl is not None and (type(ttl) is not int or ttl <= 0):
            return Reject(BAD_FIELD, "variable ttl_s must be a positive integer")
        delete = item.get("delete", False)
        if type(delete) is not bool:
            return Reject(BAD_FIELD, "variable delete must be a boolean")
        profile = item.get("auth_profile")
        if profile is not None and (type(profile) is not str or not profile):
            return Reject(BAD_FIELD, "variable auth_profile must be a non-empty string")
        out.append(Variable(name, item.get("value"), ttl, delete, profile))
    return out


def _context_fields(obj: dict, ev: Event) -> Reject | None:
    if "dialog" in obj:
        dialog = obj["dialog"]
        if dialog is not None and type(dialog) is not dict:
            return Reject(BAD_FIELD, "dialog must be an object or null")
        ev.has_dialog, ev.dialog = True, dialog
    tags = obj.get("tags")
    if tags is not None:
        if type(tags) is not list or not all(type(t) is str for t in tags):
            return Reject(BAD_FIELD, "tags must be an array of strings")
        ev.tags = tags
    sentiment = obj.get("sentiment")
    if sentiment is not None:
        if type(sentiment) is not dict or not all(
                type(v) in (int, float) for v in sentiment.values()):
            return Reject(BAD_FIELD, "sentiment must map tones to numbers")
        ev.sentiment = sentiment
    variables = obj.get("variables")
    if variables is not None:
        parsed = _variables(variables)
        if isinstance(parsed, Reject):
            return parsed
        ev.variables = parsed
    return None


def decode_event(key: bytes | None, value: bytes | None, now_ms: int,
                 max_bytes: int = DEFAULT_MAX_BYTES,
                 future_skew_ms: int = DEFAULT_FUTURE_SKEW_MS) -> Event | Reject:
    """R20: a validated event, or why not. ``now_ms`` is the worker's wall clock, used
    only for the future-skew check.

    Two decoders give the same answer: the fast one (msgspec into a ``WireEvent``,
    ``_accept``) returns the events the worker accepts and gives up on anything else;
    the reference one (``decode_reference``) is the definition, and the only one that
    names a dead-letter reason. ``tests/property/test_codec_fast_path.py`` checks that
    they agree."""
    if value is None:
        return Reject(NOT_JSON, "record has no value")
    if len(value) + (len(key) if key else 0) > max_bytes:
        return Reject(TOO_LARGE, f"record is larger than {max_bytes} bytes")
    try:
        if not value.isascii():
            try:
                value.decode()       # msgspec skips unknown fields without checking UTF-8
            except UnicodeDecodeError:
                return decode_reference(key, value, now_ms, future_skew_ms)
        try:
            wire = _decode_wire(value)
        except _WIRE_ERRORS:
            return decode_reference(key, value, now_ms, future_skew_ms)
        ev = _accept(wire, key, now_ms + future_skew_ms)
        return ev if ev is not None else decode_reference(key, value, now_ms, future_skew_ms)
    except Exception as err:   # a decoder bug must not stop the worker on one record
        return Reject(BAD_FIELD, f"the decoder failed on this record ({type(err).__name__}: "
                                 f"{str(err)[:120]}); please report it")


def _accept(w: WireEvent, key: bytes | None, max_ts: int) -> Event | None:
    """The fast path: the event, if ``w`` passes every check of R20; None otherwise."""
    app_id = w.app_id
    user_id = w.user_id
    event_id = w.event_id
    channel = w.channel
    ts = w.ts
    etype = _TYPE_NAMES.get(w.type)
    if not (etype is not None and 0 < len(event_id) <= 128
            and 0 < len(app_id) <= 256 and ":" not in app_id
            and 0 < len(user_id) <= 256 and 0 < ts <= max_ts
            and 0 < len(channel) <= 64) or etype == "context":
        return None     # context events (rare): their free-form values are left to the reference
    text_key = f"{app_id}:{user_id}"
    if key is None or key != text_key.encode():
        return None
    ev = Event(event_id, _intern(app_id), user_id, ts, etype, _intern(channel), w.developer,
               text_key)
    if etype == "user_message" or etype == "on_connect":
        intent = w.intent
        if intent is not None:
            ev.intent = _intern(intent)
        if etype == "user_message":
            if not w.input_valid:
                ev.input_valid = False
        else:
            action = w.action
            if action is None or action not in ON_CONNECT_ACTIONS:
                return None
            ev.action = action
    elif etype == "auth":
        profile = w.auth_profile
        if not profile:
            return None
        ev.auth_profile = profile
    return ev


def decode_reference(key: bytes | None, value: bytes, now_ms: int,
                     future_skew_ms: int = DEFAULT_FUTURE_SKEW_MS) -> Event | Reject:
    """R20 by definition: orjson, then the checks in a fixed order, so that every
    rejected record gets the reason of its first problem. The common case is one pass
    of type checks; the precise reason is worked out only for records that fail them."""
    try:
        obj = _loads(value)
    except _JSONDecodeError as err:
        return Reject(NOT_JSON, f"not UTF-8 JSON: {str(err)[:120]}")
    if type(obj) is not dict:
        return Reject(NOT_OBJECT, "event must be a JSON object")

    event_id = obj.get("event_id")
    app_id = obj.get("app_id")
    user_id = obj.get("user_id")
    ts = obj.get("ts")
    etype = obj.get("type")
    channel = obj.get("channel")
    if type(etype) is str:
        etype = _TYPE_NAMES.get(etype)       # the interned name, None if unknown
    if not (type(event_id) is str and 0 < len(event_id) <= 128
            and type(app_id) is str and 0 < len(app_id) <= 256 and ":" not in app_id
            and type(user_id) is str and 0 < len(user_id) <= 256
            and type(ts) is int and ts > 0
            and type(etype) is str
            and type(channel) is str and 0 < len(channel) <= 64):
        return _diagnose_required(obj)

    developer = obj.get("developer", False)
    if type(developer) is not bool:
        return Reject(BAD_FIELD, "developer must be a boolean")
    text_key = f"{app_id}:{user_id}"
    if key is None or key != text_key.encode():
        return Reject(KEY_MISMATCH, "record key does not match app_id:user_id")
    if ts > now_ms + future_skew_ms:
        return Reject(BAD_FIELD, f"ts is more than {future_skew_ms} ms ahead of the worker clock")

    ev = Event(event_id, _intern(app_id), user_id, ts, etype, _intern(channel), developer,
               text_key)
    if etype == "user_message" or etype == "on_connect":
        intent = obj.get("intent")
        if intent is not None:
            if type(intent) is not str:
                return Reject(BAD_FIELD, "intent must be a string or null")
            ev.intent = _intern(intent)   # kept by the session: one copy per intent name
        if etype == "user_message":
            input_valid = obj.get("input_valid", True)
            if type(input_valid) is not bool:
                return Reject(BAD_FIELD, "input_valid must be a boolean")
            if not input_valid:
                ev.input_valid = False
        else:
            action = obj.get("action")
            if action is None:
                return Reject(MISSING_FIELD, "action is required for on_connect")
            if type(action) is not str or action not in ON_CONNECT_ACTIONS:
                return Reject(BAD_FIELD, "action must be run_script, run_message or trigger_dialog")
            ev.action = action
    elif etype == "auth":
        profile = obj.get("auth_profile")
        if profile is None:
            return Reject(MISSING_FIELD, "auth_profile is required for auth")
        if type(profile) is not str or not profile:
            return Reject(BAD_FIELD, "auth_profile must be a non-empty string")
        ev.auth_profile = profile
    elif etype == "context":
        rejected = _context_fields(obj, ev)
        if rejected is not None:
            return rejected
    return ev


def decode_settings(key: bytes | None, value: bytes | None, cfg: CoreConfig,
                    base: AppSettings | None = None,
                    max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[str, AppSettings | None] | Reject:
    """R19: (app_id, settings) — settings None for a tombstone — or a bad_settings Reject."""
    if key is None:
        return Reject(BAD_SETTINGS, "settings record has no key (app_id)")
    try:
        app_id = key.decode()
    except UnicodeDecodeError:
        return Reject(BAD_SETTINGS, "settings key is not UTF-8")
    if value is None:
        return app_id, None
    if len(value) > max_bytes:
        return Reject(BAD_SETTINGS, f"settings record is larger than {max_bytes} bytes")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return Reject(BAD_SETTINGS, "settings are not UTF-8 JSON")
    try:
        return app_id, parse_settings(obj, app_id, cfg, base)
    except SettingsError as err:
        return Reject(BAD_SETTINGS, str(err))


def dead_letter(reject: Reject, topic: str, partition: int, offset: int,
                key: bytes | None, value: bytes | None) -> dict:
    """The ``dead-letter/1`` record for a rejected input record."""
    return {"schema": "dead-letter/1", "reason": reject.reason, "detail": reject.detail,
            "topic": topic, "partition": partition, "offset": offset,
            "key_b64": base64.b64encode(key).decode() if key is not None else None,
            "value_b64": base64.b64encode(value).decode() if value is not None else None}


encode = orjson.dumps
