"""Per-key transitions: one event (R1–R14a, R6–R8) and one due time (R6, R18, R21).

Functions here take a key's state and return the new state; the caller (``partition``)
owns the states, the clock and the deadline index.
"""
from __future__ import annotations

from .closing import (EXPIRED, INACTIVITY, INVALID_INPUT, NEW_INTENT, REFRESH as R_REFRESH,
                      close_session)
from .config import CoreConfig
from .events import (AGENT_MESSAGE, AGENT_TYPES, AUTH, CONTEXT, DISCARD, DISCARD_ALL, ON_CONNECT, REFRESH,
                     USER_MESSAGE, USER_TYPES, Event)
from .ids import DIGEST_SIZE, seen_add, session_id_bytes, session_id_text
from .outputs import OPENED, UPGRADED, Output, opened, upgraded
from .settings import CONTINUE_ON_SAME_INTENT, LEGACY, PROACTIVE, AppSettings
from .state import KeyState


def session_due(st: KeyState, s: AppSettings, cfg: CoreConfig) -> int:
    """When the open session ends by itself: the inactivity deadline in proactive mode
    (R4, R6), else the retention expiry (R18)."""
    return st.activity + (s.inactivity_ms if s.mode == PROACTIVE else cfg.retention_ms)


def next_due(st: KeyState, s: AppSettings, cfg: CoreConfig) -> int | None:
    """The next time the clock must visit this key, or None when nothing is pending."""
    if st.sid is not None:
        return session_due(st, s, cfg)
    due = st.closed_at + cfg.dedupe_window_ms if st.seen else None
    if st.vars or st.auth:
        keep_until = st.last_ts + cfg.retention_ms
        if st.vars:
            for var in st.vars.values():
                if var[1] is not None and var[1] < keep_until:
                    keep_until = var[1]
        due = keep_until if due is None else min(due, keep_until)
    return due


def _r7_reason(st: KeyState, ev: Event) -> str | None:
    """R7: does a user event after the deadline start a new session?"""
    if ev.type != USER_MESSAGE:
        return None
    if ev.intent is not None:
        return NEW_INTENT if ev.intent != st.intent else None
    if not ev.input_valid or st.intent is None:
        return INVALID_INPUT
    return None


def _open(st: KeyState, ev: Event, previous: str | None, outs: list[Output]) -> None:
    """R1, R5, R22: open a session for ``ev`` (user events open interactive ones)."""
    interactive = ev.type in USER_TYPES
    st.sid = session_id_bytes(ev.app_id, ev.user_id, ev.event_id)
    st.opened_at = st.activity = ev.ts
    st.interactive = interactive
    st.developer = ev.developer
    st.open_channel = ev.channel
    st.user_channel = None
    st.user_events = st.agent_events = 0
    st.clear_session_context()
    outs.append((OPENED, ev.key, opened(session_id_text(st.sid), ev.app_id, ev.user_id, ev.ts,
                                        interactive, ev.developer, ev.channel, ev.type,
                                        ev.event_id, previous)))


def _bounded_append(items: list, item, limit: int) -> int:
    items.append(item)
    excess = len(items) - limit
    if excess > 0:
        del items[:excess]
        return excess
    return 0


def _apply_context(st: KeyState, ev: Event, cfg: CoreConfig, stats: dict) -> None:
    """R14: dialog, tags, sentiment and variables of the open session."""
    limits = cfg.limits
    if ev.has_dialog:
        st.dialog = ev.dialog
        intent = ev.dialog.get("intent") if ev.dialog is not None else None
        st.intent = intent if isinstance(intent, str) else None
    if ev.tags is not None:
        if st.tags:
            if st.hist is None:
                st.hist = []
            stats["dropped_tags"] += _bounded_append(st.hist, st.tags, limits.historic_tags)
        tags = list(ev.tags)
        if len(tags) > limits.tags:
            stats["dropped_tags"] += len(tags) - limits.tags
            tags = tags[-limits.tags:]
        st.tags = tags
    if ev.sentiment:
        tones = st.sentiment or {}
        tones.update(ev.sentiment)
        if len(tones) > limits.sentiment_tones:
            excess = len(tones) - limits.sentiment_tones
            stats["dropped_tones"] += excess
            tones = dict(list(tones.items())[excess:])
        st.sentiment = tones
    if ev.variables:
        _apply_variables(st, ev, limits.variables, stats)


def _apply_variables(st: KeyState, ev: Event, limit: int, stats: dict) -> None:
    table = st.vars if st.vars is not None else {}
    for var in ev.variables or ():
        table.pop(var.name, None)          # re-setting moves a variable to the newest end
        if not var.delete:
            expires = ev.ts + var.ttl_s * 1000 if var.ttl_s is not None else None
            table[var.name] = [var.value, expires, var.auth_profile]
    if len(table) > limit:                 # R25: drop expired ones first, then the oldest
        for name in [n for n, v in table.items() if v[1] is not None and v[1] <= ev.ts]:
            del table[name]
        for name in list(table)[:max(0, len(table) - limit)]:
            del table[name]
            stats["dropped_variables"] += 1
    st.vars = table or None


def _apply_activity(st: KeyState, ev: Event, cfg: CoreConfig, stats: dict) -> None:
    """R2, R3, R9, R11, R12, R14a: what a user or agent event does to its session."""
    etype = ev.type
    if etype in USER_TYPES:
        st.user_events += 1
        st.user_channel = ev.channel
        if ev.ts > st.activity:
            st.activity = ev.ts
        if etype == USER_MESSAGE:
            if ev.intent is not None:
                st.intent = ev.intent
        elif etype == DISCARD:
            st.dialog = st.intent = None
            st.tags = st.hist[-1] if st.hist else None
            st.hist = None
        elif etype == DISCARD_ALL:
            st.clear_session_context()
        elif etype == AUTH:
            auth = st.auth if st.auth is not None else []
            if ev.auth_profile in auth:
                auth.remove(ev.auth_profile)
            stats["dropped_auth_profiles"] += _bounded_append(
                auth, ev.auth_profile, cfg.limits.auth_profiles)
            st.auth = auth
    else:  # agent event
        st.agent_events += 1
        if not st.interactive and ev.ts > st.activity:
            st.activity = ev.ts
        if etype == ON_CONNECT and ev.action == "trigger_dialog" and ev.intent is not None:
            st.intent = ev.intent


def fast_activity(st: KeyState, ev: Event, digest: bytes, s: AppSettings,
                  cfg: CoreConfig) -> bool:
    """The common case in one step: a user or agent message in an open session that
    neither closes nor upgrades it (R3, R9). Returns False, changing nothing, for
    anything else; ``apply_event`` then applies the full rules."""
    etype = ev.type
    ts = ev.ts
    mode = s.mode
    if ts >= st.activity + s.inactivity_ms and (mode != CONTINUE_ON_SAME_INTENT
                                                or etype != AGENT_MESSAGE):
        return False               # R6/R7/R8 decide
    if mode != PROACTIVE and ts >= st.activity + cfg.retention_ms:
        return False               # R18 expiry
    if len(st.seen) >= cfg.limits.event_ids * DIGEST_SIZE:
        return False               # let apply_event count the dropped id (R25)
    if etype == USER_MESSAGE:
        if not st.interactive:
            return False           # R2 upgrade
        st.user_events += 1
        st.user_channel = ev.channel
        if ts > st.activity:
            st.activity = ts
        if ev.intent is not None:
            st.intent = ev.intent
    elif etype == AGENT_MESSAGE:
        st.agent_events += 1
        if not st.interactive and ts > st.activity:
            st.activity = ts
    else:
        return False
    st.seen += digest
    if ts > st.last_ts:
        st.last_ts = ts
    return True


def apply_event(st: KeyState | None, ev: Event, digest: bytes, s: AppSettings,
                cfg: CoreConfig, stats: dict, outs: list[Output]) -> KeyState | None:
    """Apply one new (non-duplicate) event to its key; append outputs in R23 order."""
    etype = ev.type
    previous = None
    if st is not None and st.sid is not None:
        due = session_due(st, s, cfg)
        if ev.ts >= due:                                    # R6, R18: close first
            if s.mode == PROACTIVE:
                close_session(st, ev.key, s, cfg, INACTIVITY, due, outs)
            else:
                close_session(st, ev.key, s, cfg, EXPIRED, due, outs)
        elif s.mode != PROACTIVE and ev.ts >= st.activity + s.inactivity_ms:
            if s.mode == LEGACY:                            # R8
                if etype in USER_TYPES or etype in AGENT_TYPES:
                    previous = close_session(st, ev.key, s, cfg, INACTIVITY,
                                             st.activity + s.inactivity_ms, outs)
            elif etype in USER_TYPES:                       # R7
                reason = _r7_reason(st, ev)
                if reason is not None:
                    previous = close_session(st, ev.key, s, cfg, reason, ev.ts, outs)

    if etype == CONTEXT:
        if st is None or st.sid is None:                    # R1, R14: never opens
            stats["context_ignored"] += 1
            return st
        _apply_context(st, ev, cfg, stats)
    elif etype == REFRESH:                                  # R13
        if st is None:
            st = KeyState(ev.app_id)
        elif st.sid is not None:
            previous = close_session(st, ev.key, s, cfg, R_REFRESH, max(ev.ts, st.opened_at), outs)
        st.vars = st.auth = None
        st.clear_session_context()
        _open(st, ev, previous, outs)
    else:
        if st is None:
            st = KeyState(ev.app_id)
        if st.sid is None:
            _open(st, ev, previous, outs)
        elif etype in USER_TYPES and not st.interactive:    # R2
            st.interactive = True
            outs.append((UPGRADED, ev.key, upgraded(session_id_text(st.sid), ev.app_id,
                                                    ev.user_id, ev.ts, ev.event_id, ev.channel)))
        _apply_activity(st, ev, cfg, stats)

    st.seen, dropped = seen_add(st.seen, digest, cfg.limits.event_ids)
    stats["dropped_event_ids"] += dropped
    if ev.ts > st.last_ts:
        st.last_ts = ev.ts
    return st


def on_due(st: KeyState, key: str, s: AppSettings, cfg: CoreConfig, watermark: int,
           stats: dict, outs: list[Output]) -> KeyState | None:
    """The clock reached this key: close a due session (R6, R18), then forget what has
    outlived its time (R15 TTL variables, R21 event ids, R18 retention)."""
    if st.sid is not None:
        due = session_due(st, s, cfg)
        if due > watermark:
            return st
        close_session(st, key, s, cfg, INACTIVITY if s.mode == PROACTIVE else EXPIRED, due, outs)
    if st.vars:
        live = {n: v for n, v in st.vars.items() if v[1] is None or v[1] > watermark}
        st.vars = live or None
    if st.seen and st.closed_at + cfg.dedupe_window_ms <= watermark:
        st.seen = b""
    if (st.vars or st.auth) and st.last_ts + cfg.retention_ms <= watermark:
        st.vars = st.auth = None
        stats["states_expired"] += 1
    return None if st.is_empty() else st
