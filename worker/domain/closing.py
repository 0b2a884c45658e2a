"""Closing a session: what a close clears (R15, R16), closure messages (R17),
billing (R5, R24) and the ``session-closed`` record."""
from __future__ import annotations

from typing import Any, Final

from .config import CoreConfig
from .ids import session_id_text
from .outputs import CLOSED, NOTIFICATION, Output, notification
from .settings import PROACTIVE, AppSettings
from .state import KeyState

INACTIVITY: Final = "inactivity"
NEW_INTENT: Final = "new_intent"
INVALID_INPUT: Final = "invalid_input"
REFRESH: Final = "refresh"
EXPIRED: Final = "expired"


def billing_blocks(opened_at: int, last_activity_at: int, block_ms: int) -> int:
    """R24: max(1, ceil((last_activity_at - opened_at) / block))."""
    return max(1, -(-(last_activity_at - opened_at) // block_ms))


def _profiles_to_clear(st: KeyState, s: AppSettings) -> set[str]:
    """R16: on a proactive inactivity close, clear_auth_profiles or the close script."""
    if not st.auth:
        return set()
    script = s.close_script
    if s.clear_auth_profiles or (script is not None and script.clear_all):
        return set(st.auth)
    if script is not None:
        return set(script.profiles).intersection(st.auth)
    return set()


def close_session(st: KeyState, key: str, s: AppSettings, cfg: CoreConfig, reason: str,
                  closed_at: int, outs: list[Output]) -> str:
    """Close the open session of ``st`` and append its outputs; returns the session id.

    Refresh (R13) and expiry (R18) clear every variable and profile of the key; other
    closes clear variables without a TTL of their own, and a proactive inactivity close
    also clears the profiles of R16 with their variables. TTL variables already expired
    at ``closed_at`` were gone before the close and are not listed.
    """
    user_id = key[len(st.app) + 1:]
    assert st.sid is not None
    sid = session_id_text(st.sid)
    proactive_inactivity = reason == INACTIVITY and s.mode == PROACTIVE
    drop_all = reason in (REFRESH, EXPIRED)
    profiles = set(st.auth or ()) if drop_all else (
        _profiles_to_clear(st, s) if proactive_inactivity else set())

    cleared_vars: list[str] = []
    if st.vars:
        kept: dict[str, list[Any]] = {}
        for name, var in st.vars.items():
            expires = var[1]
            if expires is not None and expires <= closed_at:
                continue
            if drop_all or expires is None or var[2] in profiles:
                cleared_vars.append(name)
            else:
                kept[name] = var
        st.vars = kept or None
    if profiles:
        st.auth = [p for p in st.auth or () if p not in profiles] or None

    channel = st.user_channel or st.open_channel
    notified = proactive_inactivity and s.notify and channel in s.channels
    if notified:
        outs.append((NOTIFICATION, key,
                     notification(sid, st.app, user_id, channel, s.message, closed_at)))
    billable = st.interactive and not st.developer
    outs.append((CLOSED, key, {
        "schema": "session-closed/1", "session_id": sid, "app_id": st.app,
        "user_id": user_id, "opened_at": st.opened_at, "closed_at": closed_at,
        "last_activity_at": st.activity, "reason": reason, "interactive": st.interactive,
        "developer": st.developer, "billable": billable, "channel": channel,
        "user_events": st.user_events, "agent_events": st.agent_events,
        "cleared": {"variables": sorted(cleared_vars), "auth_profiles": sorted(profiles),
                    "dialog": st.dialog is not None or st.intent is not None},
        "notified": notified,
        "billing_blocks": billing_blocks(st.opened_at, st.activity, cfg.billing_block_ms)
        if billable else 0,
    }))
    st.sid = None
    st.clear_session_context()
    if closed_at > st.closed_at:
        st.closed_at = closed_at
    return sid
