"""Output records (CONTRACT.md "Outputs"), as plain dicts in a fixed field order.

Topics are named here by their default names; the shell maps them to configured ones.
"""
from __future__ import annotations

from typing import Any, Final

OPENED: Final = "session-opened"
UPGRADED: Final = "session-upgraded"
CLOSED: Final = "session-closed"
NOTIFICATION: Final = "session-notifications"
DEAD_LETTER: Final = "conversation-events-dlq"
OUTPUT_TOPICS: Final = (OPENED, UPGRADED, CLOSED, NOTIFICATION, DEAD_LETTER)

# (topic, key, value)
Output = tuple[str, str, dict[str, Any]]


def opened(sid: str, app_id: str, user_id: str, ts: int, interactive: bool, developer: bool,
           channel: str, trigger: str, trigger_event_id: str,
           previous: str | None) -> dict[str, Any]:
    return {"schema": "session-opened/1", "session_id": sid, "app_id": app_id,
            "user_id": user_id, "opened_at": ts, "interactive": interactive,
            "developer": developer, "channel": channel, "trigger": trigger,
            "trigger_event_id": trigger_event_id, "previous_session_id": previous}


def upgraded(sid: str, app_id: str, user_id: str, ts: int, event_id: str,
             channel: str) -> dict[str, Any]:
    return {"schema": "session-upgraded/1", "session_id": sid, "app_id": app_id,
            "user_id": user_id, "upgraded_at": ts, "trigger_event_id": event_id,
            "channel": channel}


def notification(sid: str, app_id: str, user_id: str, channel: str | None, text: str | None,
                 ts: int) -> dict[str, Any]:
    return {"schema": "session-notification/1", "session_id": sid, "app_id": app_id,
            "user_id": user_id, "channel": channel, "text": text, "ts": ts}
