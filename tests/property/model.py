"""An independent, deliberately plain reference model of SEMANTICS.md R1–R25 (plus the
decisions in docs/semantics-decisions.md), written from the rules, not from the core.

It keeps every key in plain dicts and, whenever the clock moves, looks at *every* key (no
deadline index, no fast path). It reuses only the codec (R20) and the settings parser
(R19), which have their own tests, and the session-id function (R22). Its per-key output
sequences must equal the core's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from worker.codec import Reject, decode_event, decode_settings
from worker.domain.config import CoreConfig
from worker.domain.ids import session_id_bytes, session_id_text
from worker.domain.settings import AppSettings

USER = {"user_message", "auth", "discard", "discard_all"}
AGENT = {"agent_message", "on_connect"}
NEVER = -(2 ** 62)


@dataclass
class Session:
    sid: str
    opened_at: int
    activity: int
    interactive: bool
    developer: bool
    open_channel: str
    user_channel: str | None = None
    user_events: int = 0
    agent_events: int = 0
    intent: str | None = None
    dialog: object = None
    tags: list = field(default_factory=list)
    hist: list = field(default_factory=list)
    sentiment: dict = field(default_factory=dict)


@dataclass
class Key:
    app: str
    user: str
    session: Session | None = None
    variables: dict = field(default_factory=dict)   # name -> (expires_at | None, profile | None)
    auth: list = field(default_factory=list)
    seen: list = field(default_factory=list)
    last_close: int = NEVER
    last_ts: int = NEVER


class Model:
    def __init__(self, cfg: CoreConfig, now_ms: int) -> None:
        self.cfg = cfg
        self.now_ms = now_ms
        self.settings: dict[str, AppSettings] = {}
        self.keys: dict[str, Key] = {}
        self.stream = NEVER
        self.wm = NEVER
        self.out: dict[str, list] = {}

    # -- input --------------------------------------------------------------------------
    def record(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if topic == "session-settings":
            decoded = decode_settings(key, value, self.cfg)
            if type(decoded) is Reject:
                return
            app, s = decoded
            if s is None:
                self.settings.pop(app, None)
            else:
                self.settings[app] = s
            self.tick()
            return
        ev = decode_event(key, value, self.now_ms)
        if type(ev) is Reject:
            return                                   # R20: no state, no clock
        if ev.ts > self.stream:                      # R10
            self.stream = ev.ts
            self.wm = max(self.wm, ev.ts - self.cfg.lateness_ms)
            self.tick()
        k = self.keys.setdefault(ev.key, Key(ev.app_id, ev.user_id))
        self.apply(k, ev)
        self.tick_key(k)

    def until(self, ts: int) -> None:
        self.wm = max(self.wm, ts)
        self.tick()

    # -- helpers ------------------------------------------------------------------------
    def s(self, k: Key) -> AppSettings:
        return self.settings.get(k.app, AppSettings())

    def emit(self, k: Key, topic: str, value: dict) -> None:
        self.out.setdefault(f"{k.app}:{k.user}", []).append((topic, value))

    def tick(self) -> None:
        for k in self.keys.values():
            self.tick_key(k)

    def tick_key(self, k: Key) -> None:
        s, cfg = self.s(k), self.cfg
        if k.session is not None:
            S = k.session
            if s.mode == "proactive":
                if S.activity + s.inactivity_ms <= self.wm:                       # R6
                    self.close(k, "inactivity", S.activity + s.inactivity_ms)
            elif S.activity + cfg.retention_ms <= self.wm:                        # R18
                self.close(k, "expired", S.activity + cfg.retention_ms)
        if k.session is None:
            k.variables = {n: v for n, v in k.variables.items()
                           if v[0] is None or v[0] > self.wm}                      # R15 TTL
            if k.seen and k.last_close + cfg.dedupe_window_ms <= self.wm:          # R21
                k.seen = []
            if k.last_ts + cfg.retention_ms <= self.wm:                            # R18
                k.variables, k.auth = {}, []
            if not k.variables and not k.auth and not k.seen:                      # no state
                k.last_close = k.last_ts = NEVER

    # -- closing (R15-R17, R24) -----------------------------------------------------------
    def close(self, k: Key, reason: str, closed_at: int) -> str:
        s, S = self.s(k), k.session
        proactive_inactivity = reason == "inactivity" and s.mode == "proactive"
        if reason in ("refresh", "expired"):
            profiles = set(k.auth)
        elif proactive_inactivity and (s.clear_auth_profiles or
                                       (s.close_script is not None and s.close_script.clear_all)):
            profiles = set(k.auth)
        elif proactive_inactivity and s.close_script is not None:
            profiles = set(s.close_script.profiles) & set(k.auth)
        else:
            profiles = set()
        cleared, kept = [], {}
        for name, (expires, profile) in k.variables.items():
            if expires is not None and expires <= closed_at:
                continue                             # already gone
            if reason in ("refresh", "expired") or expires is None or profile in profiles:
                cleared.append(name)
            else:
                kept[name] = (expires, profile)
        k.variables = kept
        k.auth = [p for p in k.auth if p not in profiles]
        channel = S.user_channel or S.open_channel
        notified = proactive_inactivity and s.notify and channel in s.channels
        if notified:
            self.emit(k, "session-notifications", {
                "schema": "session-notification/1", "session_id": S.sid, "app_id": k.app,
                "user_id": k.user, "channel": channel, "text": s.message, "ts": closed_at})
        billable = S.interactive and not S.developer
        blocks = 0
        if billable:
            span = S.activity - S.opened_at
            blocks = max(1, (span + self.cfg.billing_block_ms - 1) // self.cfg.billing_block_ms)
        self.emit(k, "session-closed", {
            "schema": "session-closed/1", "session_id": S.sid, "app_id": k.app, "user_id": k.user,
            "opened_at": S.opened_at, "closed_at": closed_at, "last_activity_at": S.activity,
            "reason": reason, "interactive": S.interactive, "developer": S.developer,
            "billable": billable, "channel": channel, "user_events": S.user_events,
            "agent_events": S.agent_events,
            "cleared": {"variables": sorted(cleared), "auth_profiles": sorted(profiles),
                        "dialog": S.dialog is not None or S.intent is not None},
            "notified": notified, "billing_blocks": blocks})
        k.session = None
        k.last_close = max(k.last_close, closed_at)
        return S.sid

    # -- one event (R1-R14a) --------------------------------------------------------------
    def open(self, k: Key, ev, previous: str | None) -> None:
        sid = session_id_text(session_id_bytes(ev.app_id, ev.user_id, ev.event_id))
        k.session = Session(sid, ev.ts, ev.ts, ev.type in USER, ev.developer, ev.channel)
        self.emit(k, "session-opened", {
            "schema": "session-opened/1", "session_id": sid, "app_id": k.app, "user_id": k.user,
            "opened_at": ev.ts, "interactive": ev.type in USER, "developer": ev.developer,
            "channel": ev.channel, "trigger": ev.type, "trigger_event_id": ev.event_id,
            "previous_session_id": previous})

    def apply(self, k: Key, ev) -> None:
        if ev.event_id in k.seen:                                                  # R21
            return
        s, lim = self.s(k), self.cfg.limits
        previous = None
        S = k.session
        if S is not None:
            if s.mode == "proactive":
                if ev.ts >= S.activity + s.inactivity_ms:                          # R6
                    self.close(k, "inactivity", S.activity + s.inactivity_ms)
            elif ev.ts >= S.activity + self.cfg.retention_ms:                      # R18
                self.close(k, "expired", S.activity + self.cfg.retention_ms)
            elif ev.ts >= S.activity + s.inactivity_ms:
                if s.mode == "legacy" and (ev.type in USER or ev.type in AGENT):    # R8
                    previous = self.close(k, "inactivity", S.activity + s.inactivity_ms)
                elif s.mode == "continue_on_same_intent" and ev.type == "user_message":  # R7
                    if ev.intent is not None and ev.intent != S.intent:
                        previous = self.close(k, "new_intent", ev.ts)
                    elif ev.intent is None and (not ev.input_valid or S.intent is None):
                        previous = self.close(k, "invalid_input", ev.ts)
        S = k.session
        if ev.type == "context":                                                   # R14
            if S is None:
                return
            if ev.has_dialog:
                S.dialog = ev.dialog
                intent = ev.dialog.get("intent") if isinstance(ev.dialog, dict) else None
                S.intent = intent if isinstance(intent, str) else None
            if ev.tags is not None:
                if S.tags:
                    S.hist = (S.hist + [S.tags])[-lim.historic_tags:]
                S.tags = list(ev.tags)[-lim.tags:]
            if ev.sentiment:
                merged = dict(S.sentiment)
                merged.update(ev.sentiment)
                S.sentiment = dict(list(merged.items())[-lim.sentiment_tones:])
            for var in ev.variables or ():
                k.variables.pop(var.name, None)
                if not var.delete:
                    expires = ev.ts + var.ttl_s * 1000 if var.ttl_s is not None else None
                    k.variables[var.name] = (expires, var.auth_profile)
            if len(k.variables) > lim.variables:                                   # R25
                k.variables = {n: v for n, v in k.variables.items()
                               if v[0] is None or v[0] > ev.ts}
                k.variables = dict(list(k.variables.items())[-lim.variables:])
        elif ev.type == "refresh":                                                 # R13
            if S is not None:
                previous = self.close(k, "refresh", max(ev.ts, S.opened_at))  # never before it opened
            k.variables, k.auth = {}, []
            self.open(k, ev, previous)
        else:
            if S is None:                                                          # R1
                self.open(k, ev, previous)
            elif ev.type in USER and not S.interactive:                            # R2
                S.interactive = True
                self.emit(k, "session-upgraded", {
                    "schema": "session-upgraded/1", "session_id": S.sid, "app_id": k.app,
                    "user_id": k.user, "upgraded_at": ev.ts, "trigger_event_id": ev.event_id,
                    "channel": ev.channel})
            S = k.session
            if ev.type in USER:                                                    # R3
                S.user_events += 1
                S.user_channel = ev.channel
                S.activity = max(S.activity, ev.ts)
                if ev.type == "user_message" and ev.intent is not None:            # R9
                    S.intent = ev.intent
                elif ev.type == "discard":                                         # R11
                    S.dialog = S.intent = None
                    S.tags = S.hist[-1] if S.hist else []
                    S.hist = []
                elif ev.type == "discard_all":                                     # R12
                    S.dialog = S.intent = None
                    S.tags, S.hist, S.sentiment = [], [], {}
                elif ev.type == "auth":                                            # R14a
                    k.auth = ([p for p in k.auth if p != ev.auth_profile]
                              + [ev.auth_profile])[-lim.auth_profiles:]
            else:
                S.agent_events += 1
                if not S.interactive:
                    S.activity = max(S.activity, ev.ts)
                if ev.type == "on_connect" and ev.action == "trigger_dialog" and ev.intent is not None:
                    S.intent = ev.intent
        k.seen = (k.seen + [ev.event_id])[-lim.event_ids:]
        k.last_ts = max(k.last_ts, ev.ts)
