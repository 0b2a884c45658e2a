"""Shared test builders: events, settings and a small driver for the session core.

``ev(type, ts, ...)`` builds a validated ``worker.domain.events.Event`` (what the codec
hands the core); ``raw(type, ts, ...)`` builds the same event as its JSON wire value (for
``worker.replay.Replayer`` / the replay CLI). ``run(records, ...)`` drives a fresh
``PartitionSessions`` and validates every output against the JSON Schemas, so every test
that uses it also checks the contract. Rule numbers refer to shared/spec/SEMANTICS.md.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import orjson

from tests.schema_check import validate_output
from worker.domain import (CLOSED, DEAD_LETTER, NOTIFICATION, OPENED, UPGRADED, CoreConfig,
                           PartitionSessions, SettingsBook, parse_settings)
from worker.domain.events import Event, Variable

# --- time ---------------------------------------------------------------------------
SEC = 1_000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_764_000_000_000          # an arbitrary epoch-ms origin
INACTIVITY = 15 * MIN           # R4 default
LATENESS = 2 * SEC              # R10 default
RETENTION = 20_160 * MIN        # R18 default
DEDUPE = 60 * MIN               # R21 default

APP = "app-1"
USER = "u-1"
KEY = f"{APP}:{USER}"

_ids = itertools.count(1)


def split_key(key: str) -> tuple[str, str]:
    app_id, _, user_id = key.partition(":")
    return app_id, user_id


def _variables(items):
    if items is None:
        return None
    out = []
    for item in items:
        if isinstance(item, Variable):
            out.append(item)
        else:
            out.append(Variable(item["name"], item.get("value"), item.get("ttl_s"),
                                item.get("delete", False), item.get("auth_profile")))
    return out


def ev(type: str, ts: int, key: str = KEY, event_id: str | None = None,
       channel: str = "web", app_id: str | None = None, user_id: str | None = None,
       **fields) -> Event:
    """A validated event. ``dialog=...`` (even ``None``) marks the dialog as sent;
    ``variables`` may be dicts ``{name, value, ttl_s?, delete?, auth_profile?}``;
    ``on_connect`` defaults to ``action="run_message"``, ``auth`` to profile ``"P"``.
    ``app_id``/``user_id`` default to the two halves of ``key`` (split at the first ':');
    when given, the key is ``app_id + ":" + user_id``."""
    if app_id is not None or user_id is not None:
        d_app, d_user = split_key(key)
        app_id, user_id = app_id or d_app, user_id or d_user
        key = f"{app_id}:{user_id}"
    else:
        app_id, user_id = split_key(key)
    if event_id is None:
        event_id = f"{type}-{ts}-{next(_ids)}"
    if type == "on_connect":
        fields.setdefault("action", "run_message")
    if type == "auth":
        fields.setdefault("auth_profile", "P")
    has_dialog = "dialog" in fields
    if "variables" in fields:
        fields["variables"] = _variables(fields["variables"])
    return Event(event_id, app_id, user_id, ts, type, channel, has_dialog=has_dialog,
                 key=key, **fields)


def raw(type: str, ts: int, key: str = KEY, event_id: str | None = None,
        channel: str = "web", **fields) -> dict:
    """The JSON wire value of an input event (CONTRACT.md "Input event")."""
    app_id, user_id = split_key(key)
    if event_id is None:
        event_id = f"{type}-{ts}-{next(_ids)}"
    if type == "on_connect":
        fields.setdefault("action", "run_message")
    if type == "auth":
        fields.setdefault("auth_profile", "P")
    value = {"event_id": event_id, "app_id": app_id, "user_id": user_id, "ts": ts,
             "type": type, "channel": channel}
    value.update(fields)
    return value


def settings_value(app_id: str = APP, **fields) -> dict:
    """A settings record value (CONTRACT.md "Settings")."""
    return {"app_id": app_id, **fields}


@dataclass(frozen=True)
class SetSettings:
    """A settings record in a ``run`` log; ``value`` None is a tombstone."""
    app_id: str
    value: dict | None


@dataclass(frozen=True)
class Until:
    """Advance the clock (watermark) to ``ts``, like ``replay --until``."""
    ts: int


@dataclass
class Run:
    part: PartitionSessions
    book: SettingsBook
    outs: list = field(default_factory=list)
    rejected: list = field(default_factory=list)   # (app_id, SettingsError) of bad settings

    @property
    def topics(self) -> list[str]:
        return [t for t, _, _ in self.outs]

    def values(self, topic: str) -> list[dict]:
        return [v for t, _, v in self.outs if t == topic]

    @property
    def opened(self) -> list[dict]:
        return self.values(OPENED)

    @property
    def closed(self) -> list[dict]:
        return self.values(CLOSED)

    @property
    def upgraded(self) -> list[dict]:
        return self.values(UPGRADED)

    @property
    def notifications(self) -> list[dict]:
        return self.values(NOTIFICATION)

    @property
    def stats(self):
        return self.part.stats

    def state(self, key: str = KEY):
        return self.part.states.get(key)

    def feed(self, *records) -> list:
        """Feed more records; returns (and appends) their outputs."""
        new: list = []
        for rec in records:
            if isinstance(rec, Event):
                new += self.part.on_event(rec)
            elif isinstance(rec, Until):
                new += self.part.advance_to(rec.ts)
            elif isinstance(rec, SetSettings):
                new += self._settings(rec.app_id, rec.value)
            else:
                raise TypeError(f"unknown record {rec!r}")
        check_outputs(new)
        self.outs += new
        return new

    def _settings(self, app_id: str, value: dict | None) -> list:
        from worker.domain import SettingsError
        if value is None:
            self.book.put(app_id, None)
        else:
            try:
                parsed = parse_settings(value, app_id, self.part.cfg, self.book.default)
            except SettingsError as err:
                self.rejected.append((app_id, err))
                return []
            self.book.put(app_id, parsed)
        return self.part.on_settings_changed(app_id)


def check_outputs(outs) -> None:
    """Every output record is valid for its topic's JSON Schema (CONTRACT.md)."""
    for topic, key, value in outs:
        assert isinstance(key, str) and (key or topic == DEAD_LETTER)
        validate_output(topic, value)


def run(records=(), settings: dict | None = None, until: int | None = None,
        cfg: CoreConfig | None = None) -> Run:
    """Drive a fresh ``PartitionSessions``: ``settings`` maps app_id -> settings value
    (applied before the first record), ``records`` are Events / SetSettings / Until,
    ``until`` advances the clock after the last record."""
    cfg = cfg or CoreConfig()
    book = SettingsBook()
    r = Run(PartitionSessions(cfg, book), book)
    for app_id, value in (settings or {}).items():
        book.put(app_id, parse_settings(settings_value(app_id, **value)
                                        if "app_id" not in value else value,
                                        app_id, cfg, book.default))
    r.feed(*records)
    if until is not None:
        r.feed(Until(until))
    return r


def encode_outputs(outs) -> bytes:
    """Byte form of an output stream (what the worker/replay would publish)."""
    return b"\n".join(orjson.dumps({"topic": t, "key": k, "value": v}) for t, k, v in outs)


def only(items):
    assert len(items) == 1, items
    return items[0]


__all__ = ["SEC", "MIN", "HOUR", "DAY", "T0", "INACTIVITY", "LATENESS", "RETENTION", "DEDUPE",
           "APP", "USER", "KEY", "ev", "raw", "settings_value", "SetSettings", "Until", "Run",
           "run", "check_outputs", "encode_outputs", "only", "OPENED", "CLOSED", "UPGRADED",
           "NOTIFICATION", "DEAD_LETTER", "split_key"]


# --- driving the Replayer (codec + core), like the worker's per-record path ----------------

NOW = T0 + DAY                  # the replayer's wall clock (R20 future-skew check only)
EVENTS = "conversation-events"
SETTINGS = "session-settings"


def _bytes(x) -> bytes | None:
    if x is None or isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode()
    return orjson.dumps(x)


@dataclass
class ReplayRun:
    """A ``worker.replay.Replayer`` fed record by record; outputs are schema-checked."""
    rp: object
    outs: list = field(default_factory=list)

    @property
    def part(self) -> PartitionSessions:
        return self.rp.part

    @property
    def topics(self) -> list[str]:
        return [t for t, _, _ in self.outs]

    def values(self, topic: str) -> list[dict]:
        return [v for t, _, v in self.outs if t == topic]

    def event(self, value, key: str | bytes | None = "auto") -> list:
        """Feed a conversation-events record; ``value`` is a dict (JSON-encoded) or raw bytes."""
        if key == "auto":
            key = f"{value['app_id']}:{value['user_id']}"
        return self.record(EVENTS, key, value)

    def settings(self, app_id: str, value) -> list:
        return self.record(SETTINGS, app_id, value)

    def record(self, topic: str, key, value) -> list:
        new = self.rp.record(topic, _bytes(key), _bytes(value))
        check_outputs(new)
        self.outs += new
        return new

    def until(self, ts: int) -> list:
        new = self.rp.until(ts)
        check_outputs(new)
        self.outs += new
        return new


def replayer(cfg: CoreConfig | None = None, now_ms: int = NOW, **kwargs) -> ReplayRun:
    from worker.replay import Replayer
    return ReplayRun(Replayer(cfg, now_ms=now_ms, **kwargs))
