"""Hypothesis strategies for random input logs, a driver and the stream invariants.

A *log* is what the worker consumes on one partition: conversation events for several keys
(all 8 types, random ts with gaps that cross deadlines, some out of order), settings
changes across the 3 modes (some invalid, some tombstones), malformed records and, when
asked, upstream retries of earlier events. Records are bytes, fed through
``worker.replay.Replayer`` (codec + core), exactly like ``python -m worker replay``.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import orjson
from hypothesis import strategies as st

from tests.builders import DAY, HOUR, MIN, SEC, T0
from tests.schema_check import validate_output
from worker.domain import CLOSED, DEAD_LETTER, NOTIFICATION, OPENED, UPGRADED, CoreConfig, Limits
from worker.domain.close_script import CloseScript
from worker.domain.settings import AppSettings, SettingsBook
from worker.replay import Replayer

NOW = T0 + 400 * DAY            # the replayer's wall clock: every generated ts is before it
EVENTS = "conversation-events"
SETTINGS = "session-settings"

# --- example counts: fast by default, HYPOTHESIS_PROFILE=nightly (or HYPOTHESIS_MAX_EXAMPLES)
_PROFILES = {"default": 1, "ci": 1, "dev": 1, "nightly": 25, "deep": 100}
_SCALE = _PROFILES.get(os.environ.get("HYPOTHESIS_PROFILE", "default"), 1)


def examples(n: int) -> int:
    """Example count for a property: ``n`` by default, scaled for a deeper nightly run."""
    explicit = os.environ.get("HYPOTHESIS_MAX_EXAMPLES")
    return int(explicit) if explicit else n * _SCALE


# --- the log ---------------------------------------------------------------------------------

APPS = ["a1", "a2"]
USERS = ["u1", "u2", "u3"]
TYPES = ["user_message", "agent_message", "on_connect", "auth", "discard", "discard_all",
         "refresh", "context"]
CHANNELS = ["web", "slack", "email"]
INTENTS = [None, "A", "B"]
PROFILES = ["P", "Q", "R"]
VALID_SCRIPTS = [None, "koreUtil.ClearAuthProfiles(['P'])", "koreUtil.ClearAllAuthProfiles()",
                 "koreUtil.ClearAuthProfiles(['P', \"Q\"]); koreUtil.ClearAuthProfiles(['R'])"]
INVALID_SCRIPTS = ["eval('x')", "koreUtil.ClearAuthProfiles(P)"]


@dataclass
class Record:
    topic: str
    key: bytes | None
    value: bytes | None
    ts: int | None = None        # for a valid event: its ts
    event_id: str | None = None  # for a valid event: its id
    valid: bool = False          # a valid conversation event


@dataclass
class Log:
    cfg: CoreConfig
    records: list[Record]
    until: int | None
    notes: dict = field(default_factory=dict)

    def __repr__(self) -> str:      # readable falsifying examples
        lines = [f"cfg={self.cfg!r}", f"until={self.until}"]
        for r in self.records:
            v = r.value.decode(errors="replace") if r.value is not None else None
            lines.append(f"  {r.topic} {r.key!r} {v}")
        return "Log(\n" + "\n".join(lines) + "\n)"


def configs(short_retention: bool = False):
    retention = (st.sampled_from([14 * MIN, 16 * MIN]) if short_retention
                 else st.sampled_from([20_160 * MIN, 2 * HOUR, 45 * MIN]))
    limits = st.sampled_from([Limits(), Limits(event_ids=4, variables=2, auth_profiles=2, tags=2,
                                               historic_tags=2, sentiment_tones=2)])
    return st.builds(lambda lat, ret, ded, blk, lim: CoreConfig(
        lateness_ms=lat, retention_ms=ret, dedupe_window_ms=ded, billing_block_ms=blk, limits=lim),
        st.sampled_from([2 * SEC, 0, 30 * SEC]), retention,
        st.sampled_from([60 * MIN, 10 * MIN]), st.sampled_from([15 * MIN, 7 * MIN]), limits)


@st.composite
def settings_values(draw, app: str):
    if draw(st.integers(0, 9)) == 0:
        return None                                         # tombstone
    value: dict = {"app_id": app}
    value["mode"] = draw(st.sampled_from(["proactive", "continue_on_same_intent", "legacy"]))
    if draw(st.booleans()):
        value["inactivity_minutes"] = draw(st.sampled_from([5, 10, 15, 30]))
    if draw(st.booleans()):
        value["closure"] = {"behavior": draw(st.sampled_from(["silent", "message"])),
                            "message": "Bye",
                            "channels": draw(st.lists(st.sampled_from(CHANNELS), unique=True))}
    if draw(st.booleans()):
        value["clear_auth_profiles"] = draw(st.booleans())
    if draw(st.booleans()):
        value["close_script"] = draw(st.sampled_from(VALID_SCRIPTS))
    if draw(st.integers(0, 7)) == 0:                        # R19: rejected whole
        bad = draw(st.sampled_from(["mode", "inactivity", "script", "closure"]))
        if bad == "mode":
            value["mode"] = "sometimes"
        elif bad == "inactivity":
            value["inactivity_minutes"] = draw(st.sampled_from([3, 20_161, 7.5, "15"]))
        elif bad == "script":
            value["close_script"] = draw(st.sampled_from(INVALID_SCRIPTS))
        else:
            value["closure"] = {"behavior": "message"}
    return value


@st.composite
def event_fields(draw, etype: str) -> dict:
    f: dict = {}
    if draw(st.integers(0, 9)) == 0:
        f["developer"] = True
    if etype == "user_message":
        f["intent"] = draw(st.sampled_from(INTENTS))
        if draw(st.integers(0, 3)) == 0:
            f["input_valid"] = False
    elif etype == "on_connect":
        f["action"] = draw(st.sampled_from(["run_script", "run_message", "trigger_dialog"]))
        f["intent"] = draw(st.sampled_from(INTENTS))
    elif etype == "auth":
        f["auth_profile"] = draw(st.sampled_from(PROFILES))
    elif etype == "context":
        if draw(st.booleans()):
            f["dialog"] = draw(st.sampled_from([None, {"intent": "A"}, {"intent": "B"}, {"step": 2}]))
        if draw(st.booleans()):
            f["tags"] = draw(st.lists(st.sampled_from(["t1", "t2", "t3"]), max_size=3))
        if draw(st.booleans()):
            f["sentiment"] = draw(st.dictionaries(st.sampled_from(["joy", "anger", "fear"]),
                                                  st.integers(-3, 3), max_size=2))
        if draw(st.booleans()):
            f["variables"] = draw(st.lists(st.fixed_dictionaries(
                {"name": st.sampled_from(["v1", "v2", "v3"]), "value": st.integers(0, 9)},
                optional={"ttl_s": st.sampled_from([30, 600, 3600, 7200]),
                          "delete": st.booleans(),
                          "auth_profile": st.sampled_from(PROFILES)}), max_size=3))
    return f


# gaps: within a session, around the deadlines of the generated inactivity settings (5, 10, 15,
# 30 min: exactly at them, when only the event itself can close the session within the
# lateness), around the short retentions (14, 16 min), and far beyond
STEPS = [0, SEC, 30 * SEC, 3 * MIN, 5 * MIN, 8 * MIN, 10 * MIN, 14 * MIN, 15 * MIN, 16 * MIN,
         30 * MIN, 31 * MIN, 50 * MIN, 3 * HOUR, DAY]
JITTER = [0, 0, 0, 0, -SEC, -45 * SEC, -4 * MIN]     # out-of-order events, at most 4 min late


@st.composite
def logs(draw, max_records: int = 30, retries: bool = True, bad: bool = True,
         short_retention: bool = False, until: bool = True) -> Log:
    cfg = draw(configs(short_retention))
    n = draw(st.integers(1, max_records))
    records: list[Record] = []
    apps = draw(st.lists(st.sampled_from(APPS), min_size=1, unique=True))
    users = draw(st.lists(st.sampled_from(USERS), min_size=1, unique=True))
    for app in apps:                                 # most apps start with their own settings
        if draw(st.integers(0, 3)) > 0:
            value = draw(settings_values(app))
            records.append(Record(SETTINGS, app.encode(),
                                  None if value is None else orjson.dumps(value)))
    now = T0
    sent: list[Record] = []
    kinds = ["event"] * 8 + ["settings"] + (["bad"] if bad else []) + (["retry"] if retries else [])
    for i in range(n):
        kind = draw(st.sampled_from(kinds))
        if kind == "retry" and not sent:
            kind = "event"
        if kind == "settings":
            app = draw(st.sampled_from(apps))
            value = draw(settings_values(app))
            records.append(Record(SETTINGS, app.encode(),
                                  None if value is None else orjson.dumps(value)))
            continue
        if kind == "retry":                          # an upstream retry: the same bytes again
            records.append(draw(st.sampled_from(sent)))
            continue
        now += draw(st.sampled_from(STEPS))
        ts = now + draw(st.sampled_from(JITTER))
        app, user = draw(st.sampled_from(apps)), draw(st.sampled_from(users))
        etype = draw(st.sampled_from(TYPES))
        value = {"event_id": f"e{i}", "app_id": app, "user_id": user, "ts": ts, "type": etype,
                 "channel": draw(st.sampled_from(CHANNELS)), **draw(event_fields(etype))}
        key = f"{app}:{user}".encode()
        if kind == "bad":                            # R20: goes to the dead-letter topic
            how = draw(st.sampled_from(["not_json", "missing", "skew", "key", "type"]))
            if how == "not_json":
                records.append(Record(EVENTS, key, b"{" + orjson.dumps(value)))
            elif how == "missing":
                del value["channel"]
                records.append(Record(EVENTS, key, orjson.dumps(value)))
            elif how == "skew":
                value["ts"] = NOW + 2 * HOUR
                records.append(Record(EVENTS, key, orjson.dumps(value)))
            elif how == "key":
                records.append(Record(EVENTS, f"{app}:other".encode(), orjson.dumps(value)))
            else:
                value["type"] = "typing"
                records.append(Record(EVENTS, key, orjson.dumps(value)))
            continue
        rec = Record(EVENTS, key, orjson.dumps(value), ts=ts, event_id=value["event_id"], valid=True)
        records.append(rec)
        sent.append(rec)
    last = max([r.ts for r in records if r.valid], default=T0)
    end = draw(st.sampled_from([None, 0, 10 * MIN, 16 * MIN, 2 * HOUR, 3 * DAY, 15 * DAY])) if until else None
    return Log(cfg, records, None if end is None else last + end)


def event_record(etype: str, ts: int, app: str = "a1", user: str = "u1", event_id: str = "x",
                 **fields) -> Record:
    value = {"event_id": event_id, "app_id": app, "user_id": user, "ts": ts, "type": etype,
             "channel": "web", **fields}
    return Record(EVENTS, f"{app}:{user}".encode(), orjson.dumps(value), ts=ts,
                  event_id=event_id, valid=True)


def settings_record(app: str = "a1", **fields) -> Record:
    return Record(SETTINGS, app.encode(), orjson.dumps({"app_id": app, **fields}))


# --- driving ---------------------------------------------------------------------------------

def new_replayer(cfg: CoreConfig, fast_path: bool = True, book: SettingsBook | None = None) -> Replayer:
    rp = Replayer(cfg, book=book, now_ms=NOW)
    rp.part.fast_path = fast_path
    return rp


def feed(rp: Replayer, records) -> list:
    outs = []
    for rec in records:
        if isinstance(rec, int):                     # a clock tick (watermark)
            outs += rp.until(rec)
        else:
            outs += rp.record(rec.topic, rec.key, rec.value)
    return outs


def replay(log: Log, fast_path: bool = True, records=None) -> list:
    rp = new_replayer(log.cfg, fast_path)
    outs = feed(rp, log.records if records is None else records)
    if log.until is not None:
        outs += rp.until(log.until)
    return outs


def encode(outs) -> bytes:
    return b"\n".join(orjson.dumps({"topic": t, "key": k, "value": v}) for t, k, v in outs)


def per_key(outs, with_dead_letters: bool = False) -> dict:
    by: dict = {}
    for t, k, v in outs:
        if t != DEAD_LETTER or with_dead_letters:
            by.setdefault(k, []).append((t, v))
    return by


# --- settings book (de)serialisation for the restart property ---------------------------------

def _settings_to_json(s: AppSettings) -> dict:
    return {"mode": s.mode, "inactivity_ms": s.inactivity_ms, "notify": s.notify,
            "message": s.message, "channels": sorted(s.channels),
            "clear_auth_profiles": s.clear_auth_profiles,
            "close_script": None if s.close_script is None else
            {"clear_all": s.close_script.clear_all, "profiles": list(s.close_script.profiles)}}


def _settings_from_json(d: dict) -> AppSettings:
    script = d["close_script"]
    return AppSettings(mode=d["mode"], inactivity_ms=d["inactivity_ms"], notify=d["notify"],
                       message=d["message"], channels=frozenset(d["channels"]),
                       clear_auth_profiles=d["clear_auth_profiles"],
                       close_script=None if script is None else
                       CloseScript(clear_all=script["clear_all"], profiles=tuple(script["profiles"])))


def book_to_json(book: SettingsBook) -> dict:
    return {"default": _settings_to_json(book.default),
            "apps": {app: _settings_to_json(book.get(app)) for app in book.apps()}}


def book_from_json(d: dict) -> SettingsBook:
    book = SettingsBook(_settings_from_json(d["default"]))
    for app, s in d["apps"].items():
        book.put(app, _settings_from_json(s))
    return book


# --- invariants of an output stream -----------------------------------------------------------

def check_stream(outs, cfg: CoreConfig, log: Log | None = None) -> None:
    """R1/R2/R5/R17/R23/R24 invariants of one partition's output stream (plus the schemas)."""
    open_: dict[str, dict] = {}        # key -> {"opened": record, "upgraded": bool}
    last: dict[str, tuple] = {}        # key -> last (topic, value) for that key
    opened_ids: Counter = Counter()
    for i, (topic, key, v) in enumerate(outs):
        validate_output(topic, v)
        if topic == DEAD_LETTER:
            continue
        assert f"{v['app_id']}:{v['user_id']}" == key
        if topic == NOTIFICATION:
            # R17/R23: a notification is immediately followed by its own session-closed
            nt, nk, nv = outs[i + 1]
            assert (nt, nk, nv["session_id"]) == (CLOSED, key, v["session_id"])
            assert nv["notified"] is True and nv["reason"] == "inactivity"
            assert (nv["closed_at"], nv["channel"]) == (v["ts"], v["channel"])
            assert key in open_ and open_[key]["opened"]["session_id"] == v["session_id"]
        elif topic == OPENED:
            assert key not in open_, f"two open sessions for {key}"     # R1
            prev = v["previous_session_id"]
            if prev is not None:                                          # R23
                lt, lv = last[key]
                assert lt == CLOSED and lv["session_id"] == prev
                assert lv["reason"] in ("new_intent", "invalid_input", "inactivity", "refresh")
                assert lv["closed_at"] <= v["opened_at"] or lv["reason"] == "refresh"
            assert v["trigger"] in TYPES and v["trigger"] != "context"    # R1, R14
            assert v["interactive"] is (v["trigger"] in
                                        ("user_message", "auth", "discard", "discard_all"))
            open_[key] = {"opened": v, "upgraded": False}
            opened_ids[v["session_id"]] += 1
        elif topic == UPGRADED:                                           # R2, R23
            cur = open_.get(key)
            assert cur is not None and cur["opened"]["session_id"] == v["session_id"]
            assert not cur["upgraded"] and not cur["opened"]["interactive"]
            cur["upgraded"] = True
        elif topic == CLOSED:
            cur = open_.pop(key, None)
            assert cur is not None, f"session-closed without an open session for {key}"
            o = cur["opened"]
            assert v["session_id"] == o["session_id"]
            assert v["opened_at"] == o["opened_at"] and v["developer"] == o["developer"]
            assert v["interactive"] == (o["interactive"] or cur["upgraded"])          # R2
            assert v["billable"] == (v["interactive"] and not v["developer"])         # R5
            span = v["last_activity_at"] - v["opened_at"]
            assert span >= 0                                                          # R3
            blocks = max(1, -(-span // cfg.billing_block_ms)) if v["billable"] else 0
            assert v["billing_blocks"] == blocks                                      # R24
            if v["reason"] == "inactivity":
                assert v["closed_at"] > v["last_activity_at"]
            elif v["reason"] == "expired":
                assert v["closed_at"] == v["last_activity_at"] + cfg.retention_ms     # R18
            elif v["reason"] in ("new_intent", "invalid_input"):
                assert v["closed_at"] > v["last_activity_at"]
            if v["notified"]:
                pt, pk, pv = outs[i - 1]
                assert (pt, pk, pv["session_id"]) == (NOTIFICATION, key, v["session_id"])
            assert v["cleared"]["variables"] == sorted(set(v["cleared"]["variables"]))
            assert v["cleared"]["auth_profiles"] == sorted(set(v["cleared"]["auth_profiles"]))
        last[key] = (topic, v)
    if log is not None:
        # a session id is opened twice only when its opening event was sent again (R21 retry)
        sent = Counter(r.event_id for r in log.records if r.valid)
        for sid, n in opened_ids.items():
            if n > 1:
                trig = {v["trigger_event_id"] for t, _, v in outs if t == OPENED and v["session_id"] == sid}
                assert len(trig) == 1 and sent[trig.pop()] >= n
