"""The validated input event (CONTRACT.md "Input event").

The codec builds these from raw bytes; the core never sees an invalid event.
"""
from __future__ import annotations

from typing import Any, ClassVar, Final

USER_MESSAGE: Final = "user_message"
AGENT_MESSAGE: Final = "agent_message"
ON_CONNECT: Final = "on_connect"
AUTH: Final = "auth"
DISCARD: Final = "discard"
DISCARD_ALL: Final = "discard_all"
REFRESH: Final = "refresh"
CONTEXT: Final = "context"

USER_TYPES: Final = frozenset({USER_MESSAGE, AUTH, DISCARD, DISCARD_ALL})
AGENT_TYPES: Final = frozenset({AGENT_MESSAGE, ON_CONNECT})
CONTROL_TYPES: Final = frozenset({REFRESH, CONTEXT})
EVENT_TYPES: Final = USER_TYPES | AGENT_TYPES | CONTROL_TYPES
ON_CONNECT_ACTIONS: Final = frozenset({"run_script", "run_message", "trigger_dialog"})


class Variable:
    """One entry of a context event's ``variables`` (R14, R15, R16)."""

    __slots__ = ("name", "value", "ttl_s", "delete", "auth_profile")

    name: str
    value: Any
    ttl_s: int | None
    delete: bool
    auth_profile: str | None

    def __init__(self, name: str, value: Any = None, ttl_s: int | None = None,
                 delete: bool = False, auth_profile: str | None = None) -> None:
        self.name = name
        self.value = value
        self.ttl_s = ttl_s
        self.delete = delete
        self.auth_profile = auth_profile

    def __repr__(self) -> str:
        return f"Variable({self.name!r}, ttl_s={self.ttl_s}, delete={self.delete})"


class Event:
    """A validated conversation event. ``key`` is ``app_id + ":" + user_id``.

    Optional fields have defaults, so the codec only sets what a record carries.
    ``has_dialog`` tells a context event that sets ``dialog: null`` (clear) apart from
    one that does not mention the dialog at all. (Written so that mypyc can compile it
    to a native class: annotated attributes, no ``__dict__``, and a constructor without
    ``**kwargs``, which the codec calls directly for every record.)
    """

    event_id: str
    app_id: str
    user_id: str
    ts: int
    type: str
    channel: str
    developer: bool
    key: str
    intent: str | None
    input_valid: bool
    action: str | None
    auth_profile: str | None
    has_dialog: bool
    dialog: dict[str, Any] | None
    tags: list[str] | None
    sentiment: dict[str, Any] | None
    variables: list[Variable] | None

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "intent", "input_valid", "action", "auth_profile", "has_dialog", "dialog", "tags",
        "sentiment", "variables"})

    def __init__(self, event_id: str, app_id: str, user_id: str, ts: int, type: str,
                 channel: str, developer: bool = False, key: str | None = None,
                 intent: str | None = None, input_valid: bool = True,
                 action: str | None = None, auth_profile: str | None = None,
                 has_dialog: bool = False, dialog: dict[str, Any] | None = None,
                 tags: list[str] | None = None, sentiment: dict[str, Any] | None = None,
                 variables: list[Variable] | None = None) -> None:
        self.event_id = event_id
        self.app_id = app_id
        self.user_id = user_id
        self.ts = ts
        self.type = type
        self.channel = channel
        self.developer = developer
        self.key = key if key is not None else f"{app_id}:{user_id}"
        self.intent = intent
        self.input_valid = input_valid
        self.action = action
        self.auth_profile = auth_profile
        self.has_dialog = has_dialog or dialog is not None
        self.dialog = dialog
        self.tags = tags
        self.sentiment = sentiment
        self.variables = variables

    def __repr__(self) -> str:
        return f"Event({self.type} {self.key} ts={self.ts} id={self.event_id!r})"
