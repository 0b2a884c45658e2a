"""What the session lookup API shows of a key (issue: operable service).

Names and times only for variables — never their values — so support staff and the
dialog engine can see discard / discard_all (R11, R12) and context (R14) take effect
without exposing user data.
"""
from __future__ import annotations

from .config import CoreConfig
from .ids import session_id_text
from .rules import session_due
from .settings import AppSettings
from .state import KeyState


def key_view(st: KeyState, key: str, s: AppSettings, cfg: CoreConfig, watermark: int) -> dict:
    """The key's current state; TTL variables already expired at ``watermark`` are hidden."""
    session = None
    if st.sid is not None:
        session = {
            "session_id": session_id_text(st.sid), "opened_at": st.opened_at,
            "last_activity_at": st.activity, "interactive": st.interactive,
            "developer": st.developer, "channel": st.user_channel or st.open_channel,
            "user_events": st.user_events, "agent_events": st.agent_events,
            "mode": s.mode, "due_at": session_due(st, s, cfg),
        }
    variables = [
        {"name": name, "expires_at": var[1], "auth_profile": var[2]}
        for name, var in (st.vars or {}).items() if var[1] is None or var[1] > watermark
    ]
    return {
        "app_id": st.app, "user_id": key[len(st.app) + 1:], "session": session,
        "intent": st.intent, "dialog": st.dialog,
        "tags": list(st.tags or ()), "historic_tags": [list(t) for t in st.hist or ()],
        "sentiment": dict(st.sentiment or {}), "variables": variables,
        "auth_profiles": list(st.auth or ()),
        "last_closed_at": st.closed_at or None, "watermark": watermark,
    }
