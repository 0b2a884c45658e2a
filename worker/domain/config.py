"""Worker-level settings the core needs (R4, R10, R18, R21, R24, R25).

Everything here is operator configuration, not per-app settings: the shell builds one
``CoreConfig`` from the environment and hands it to the core.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

MINUTE_MS: Final = 60_000


@dataclass(frozen=True, slots=True)
class Limits:
    """R25: per-key bounds. Past a bound the oldest entries are dropped and counted."""

    event_ids: int = 256          # R21: remembered event ids per key
    variables: int = 64           # app user session variables per key
    auth_profiles: int = 16       # authorized profiles per key
    tags: int = 32                # entries in the current tags
    historic_tags: int = 16       # pushed tag lists kept in the historic tags
    sentiment_tones: int = 32     # tones in the merged sentiment


@dataclass(frozen=True, slots=True)
class CoreConfig:
    lateness_ms: int = 2_000                      # R10 allowed lateness
    retention_ms: int = 20_160 * MINUTE_MS        # R18
    dedupe_window_ms: int = 60 * MINUTE_MS        # R21
    billing_block_ms: int = 15 * MINUTE_MS        # R24
    min_inactivity_minutes: int = 5               # R4 / R19 bounds (deployment-configurable)
    max_inactivity_minutes: int = 20_160
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if self.lateness_ms < 0 or self.retention_ms <= 0 or self.dedupe_window_ms < 0:
            raise ValueError("lateness, retention and dedupe window must be non-negative")
        if self.billing_block_ms <= 0:
            raise ValueError("billing block must be positive")
        if not 1 <= self.min_inactivity_minutes <= self.max_inactivity_minutes:
            raise ValueError("inactivity bounds must satisfy 1 <= min <= max")
