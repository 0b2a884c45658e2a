"""Per-key state: small, flat and serialisable (R15, R18, R21, R25).

One ``KeyState`` per (app_id, user_id) holds the open session, if any, and what outlives
sessions: variables with their own TTL, authorized profiles and the remembered event ids.
``to_wire``/``from_wire`` turn it into JSON-able lists for the Kafka-backed table.
"""
from __future__ import annotations

import base64
from typing import Any, Final

WIRE_VERSION: Final = 1


class Extras:
    """What few keys carry: the dialog context, tags and sentiment of the open session,
    variables and authorized profiles. Kept apart so that a key without any of them
    costs one pointer, not six (``KeyState.more``; at 1M open sessions, ~48 MB)."""

    __slots__ = ("dialog", "tags", "hist", "sentiment", "vars", "auth")

    dialog: dict[str, Any] | None
    tags: list[str] | None
    hist: list[list[str]] | None
    sentiment: dict[str, Any] | None
    vars: dict[str, list[Any]] | None
    auth: list[str] | None

    def __init__(self) -> None:
        self.dialog = None
        self.tags = None
        self.hist = None
        self.sentiment = None
        self.vars = None
        self.auth = None

    def is_empty(self) -> bool:
        return (self.dialog is None and self.tags is None and self.hist is None
                and self.sentiment is None and self.vars is None and self.auth is None)


class KeyState:
    """``sid is None`` means no session is open; the session fields are then unused.

    ``dialog``, ``tags``, ``hist``, ``sentiment``, ``vars`` (name -> [value, expires_at |
    None, auth_profile | None]) and ``auth`` (authorized profile names, oldest first)
    are properties over ``more`` (``Extras``), which exists only while one of them is
    set."""

    __slots__ = (
        "app",            # app_id (interned by the codec)
        "sid",            # open session id, 16 bytes, or None
        "opened_at", "activity",
        "interactive", "developer",
        "open_channel", "user_channel",
        "user_events", "agent_events",
        "intent",
        "more",           # Extras, or None
        "seen",           # concatenated event-id digests (R21)
        "closed_at",      # time of the last close, 0 if none
        "last_ts",        # greatest ts of any event applied to the key
        "due",            # next time the clock must visit the key, 0 if none (DeadlineIndex)
    )

    app: str
    sid: bytes | None
    opened_at: int
    activity: int
    interactive: bool
    developer: bool
    open_channel: str | None
    user_channel: str | None
    user_events: int
    agent_events: int
    intent: str | None
    more: Extras | None
    seen: bytes
    closed_at: int
    last_ts: int
    due: int

    def __init__(self, app: str) -> None:
        self.app = app
        self.sid = None
        self.opened_at = 0
        self.activity = 0
        self.interactive = False
        self.developer = False
        self.open_channel = None
        self.user_channel = None
        self.user_events = 0
        self.agent_events = 0
        self.intent = None
        self.more = None
        self.seen = b""
        self.closed_at = 0
        self.last_ts = 0
        self.due = 0

    @property
    def dialog(self) -> dict[str, Any] | None:
        more = self.more
        return more.dialog if more is not None else None

    @dialog.setter
    def dialog(self, value: dict[str, Any] | None) -> None:
        more = self.more
        if more is None:
            if value is None:
                return
            more = self.more = Extras()
        more.dialog = value
        if value is None and more.is_empty():
            self.more = None

    @property
    def tags(self) -> list[str] | None:
        more = self.more
        return more.tags if more is not None else None

    @tags.setter
    def tags(self, value: list[str] | None) -> None:
        more = self.more
        if more is None:
            if value is None:
                return
            more = self.more = Extras()
        more.tags = value
        if value is None and more.is_empty():
            self.more = None

    @property
    def hist(self) -> list[list[str]] | None:
        more = self.more
        return more.hist if more is not None else None

    @hist.setter
    def hist(self, value: list[list[str]] | None) -> None:
        more = self.more
        if more is None:
            if value is None:
                return
            more = self.more = Extras()
        more.hist = value
        if value is None and more.is_empty():
            self.more = None

    @property
    def sentiment(self) -> dict[str, Any] | None:
        more = self.more
        return more.sentiment if more is not None else None

    @sentiment.setter
    def sentiment(self, value: dict[str, Any] | None) -> None:
        more = self.more
        if more is None:
            if value is None:
                return
            more = self.more = Extras()
        more.sentiment = value
        if value is None and more.is_empty():
            self.more = None

    @property
    def vars(self) -> dict[str, list[Any]] | None:
        more = self.more
        return more.vars if more is not None else None

    @vars.setter
    def vars(self, value: dict[str, list[Any]] | None) -> None:
        more = self.more
        if more is None:
            if value is None:
                return
            more = self.more = Extras()
        more.vars = value
        if value is None and more.is_empty():
            self.more = None

    @property
    def auth(self) -> list[str] | None:
        more = self.more
        return more.auth if more is not None else None

    @auth.setter
    def auth(self, value: list[str] | None) -> None:
        more = self.more
        if more is None:
            if value is None:
                return
            more = self.more = Extras()
        more.auth = value
        if value is None and more.is_empty():
            self.more = None

    def clear_session_context(self) -> None:
        """Dialog context, intent, tags and sentiment (R11, R12, R15)."""
        self.intent = None
        more = self.more
        if more is not None:
            more.dialog = more.tags = more.hist = more.sentiment = None
            if more.vars is None and more.auth is None:
                self.more = None

    def is_empty(self) -> bool:
        return self.sid is None and not self.vars and not self.auth and not self.seen

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyState) and to_wire(self) == to_wire(other)

    def __repr__(self) -> str:
        return f"KeyState({to_wire(self)!r})"


def to_wire(st: KeyState) -> list[Any]:
    """A JSON-able list; session fields are only written while a session is open."""
    head: list[Any] = [WIRE_VERSION, st.app, st.closed_at, st.last_ts,
            base64.b64encode(st.seen).decode() if st.seen else "",
            [[n, *v] for n, v in st.vars.items()] if st.vars else None,
            list(st.auth) if st.auth else None]
    if st.sid is None:
        return head
    return head + [
        st.sid.hex(), st.opened_at, st.activity, st.interactive, st.developer,
        st.open_channel, st.user_channel, st.user_events, st.agent_events,
        st.intent, st.dialog, st.tags, st.hist, st.sentiment,
    ]


def from_wire(wire: list[Any]) -> KeyState:
    if not wire or wire[0] != WIRE_VERSION:
        raise ValueError(f"unsupported key-state version {wire[:1]!r}")
    st = KeyState(wire[1])
    st.closed_at, st.last_ts = wire[2], wire[3]
    st.seen = base64.b64decode(wire[4]) if wire[4] else b""
    st.vars = {v[0]: [v[1], v[2], v[3]] for v in wire[5]} if wire[5] else None
    st.auth = list(wire[6]) if wire[6] else None
    if len(wire) > 7:
        (sid, st.opened_at, st.activity, st.interactive, st.developer, st.open_channel,
         st.user_channel, st.user_events, st.agent_events, st.intent, st.dialog, st.tags,
         st.hist, st.sentiment) = wire[7:21]
        st.sid = bytes.fromhex(sid)
    return st
