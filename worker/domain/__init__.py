"""The session state machine (functional core).

Plain Python only: no Faust, aiokafka, orjson or prometheus imports, no clock reads.
Time always comes in as arguments, so the same records in the same order give the same
outputs. The live worker feeds it records and ships its outputs; tests use it as the
oracle. Rule numbers (R1..R25) refer to ``shared/spec/SEMANTICS.md``.
"""
from .config import CoreConfig, Limits
from .events import Event, USER_TYPES, AGENT_TYPES, EVENT_TYPES
from .outputs import OPENED, UPGRADED, CLOSED, NOTIFICATION, DEAD_LETTER, OUTPUT_TOPICS
from .settings import AppSettings, SettingsBook, SettingsError, parse_settings
from .partition import PartitionSessions

__all__ = [
    "CoreConfig", "Limits", "Event", "USER_TYPES", "AGENT_TYPES", "EVENT_TYPES",
    "OPENED", "UPGRADED", "CLOSED", "NOTIFICATION", "DEAD_LETTER", "OUTPUT_TOPICS",
    "AppSettings", "SettingsBook", "SettingsError", "parse_settings", "PartitionSessions",
]
