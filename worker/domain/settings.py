"""Per-app session settings: validation (R19) and the book of current settings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from .close_script import CloseScript, ScriptError, parse_close_script
from .config import MINUTE_MS, CoreConfig

PROACTIVE: Final = "proactive"
CONTINUE_ON_SAME_INTENT: Final = "continue_on_same_intent"
LEGACY: Final = "legacy"
MODES: Final = (PROACTIVE, CONTINUE_ON_SAME_INTENT, LEGACY)
BEHAVIORS: Final = ("silent", "message")


class SettingsError(ValueError):
    """R19: settings rejected whole; ``str(err)`` is the reason for the dead letter."""


@dataclass(frozen=True, slots=True)
class AppSettings:
    mode: str = PROACTIVE
    inactivity_ms: int = 15 * MINUTE_MS
    notify: bool = False                       # closure.behavior == "message"
    message: str | None = None
    channels: frozenset[str] = frozenset()
    clear_auth_profiles: bool = False
    close_script: CloseScript | None = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_settings(value: Any, app_id: str, cfg: CoreConfig,
                   base: AppSettings | None = None) -> AppSettings:
    """Validate a settings record for ``app_id`` (its Kafka key).

    Fields that are absent take ``base`` (the worker's configured defaults). Raises
    ``SettingsError`` with a human-readable reason; never returns partial settings.
    """
    base = base or AppSettings()
    if not isinstance(value, dict):
        raise SettingsError("settings must be a JSON object")
    if value.get("app_id") != app_id:
        raise SettingsError(f"app_id {value.get('app_id')!r} does not match the record key")

    mode = value.get("mode", base.mode)
    if mode not in MODES:
        raise SettingsError(f"mode must be one of {', '.join(MODES)}")

    if "inactivity_minutes" in value:
        minutes = value["inactivity_minutes"]
        lo, hi = cfg.min_inactivity_minutes, cfg.max_inactivity_minutes
        if not _is_int(minutes) or not lo <= minutes <= hi:
            raise SettingsError(f"inactivity_minutes must be an integer in {lo} … {hi}")
        inactivity_ms = minutes * MINUTE_MS
    else:
        inactivity_ms = base.inactivity_ms

    notify, message, channels = base.notify, base.message, base.channels
    if "closure" in value:
        closure = value["closure"]
        if not isinstance(closure, dict):
            raise SettingsError("closure must be an object")
        behavior = closure.get("behavior", "silent")
        if behavior not in BEHAVIORS:
            raise SettingsError("closure.behavior must be silent or message")
        raw_message = closure.get("message")
        if raw_message is not None and (not isinstance(raw_message, str)
                                        or not 1 <= len(raw_message) <= 2000):
            raise SettingsError("closure.message must be a string of 1 … 2000 characters")
        message = raw_message
        notify = behavior == "message"
        if notify and message is None:
            raise SettingsError("closure.message is required when behavior is message")
        raw_channels = closure.get("channels", [])
        if not isinstance(raw_channels, list) or not all(isinstance(c, str) for c in raw_channels):
            raise SettingsError("closure.channels must be an array of channel names")
        channels = frozenset(raw_channels)

    clear_auth = value.get("clear_auth_profiles", base.clear_auth_profiles)
    if not isinstance(clear_auth, bool):
        raise SettingsError("clear_auth_profiles must be a boolean")

    script = base.close_script
    if "close_script" in value:
        source = value["close_script"]
        if source is None:
            script = None
        elif not isinstance(source, str):
            raise SettingsError("close_script must be a string or null")
        else:
            try:
                script = parse_close_script(source)
            except ScriptError as err:
                raise SettingsError(f"close_script: {err}") from None

    return AppSettings(mode=mode, inactivity_ms=inactivity_ms, notify=notify, message=message,
                       channels=channels, clear_auth_profiles=clear_auth, close_script=script)


class SettingsBook:
    """The current settings of every app; apps without a record use the defaults."""

    __slots__ = ("default", "_by_app")

    def __init__(self, default: AppSettings | None = None) -> None:
        self.default = default or AppSettings()
        self._by_app: dict[str, AppSettings] = {}

    def get(self, app_id: str) -> AppSettings:
        return self._by_app.get(app_id, self.default)

    def put(self, app_id: str, settings: AppSettings | None) -> None:
        """Store valid settings, or ``None`` for a tombstone (back to defaults)."""
        if settings is None:
            self._by_app.pop(app_id, None)
        else:
            self._by_app[app_id] = settings

    def apps(self) -> list[str]:
        return sorted(self._by_app)
