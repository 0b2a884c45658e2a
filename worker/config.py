"""Worker configuration from environment variables (all documented in the README)."""
from __future__ import annotations

import os

from .domain.config import MINUTE_MS, CoreConfig, Limits


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"configuration error: {name} must be an integer, got {raw!r}") from None


def core_config_from_env(**overrides) -> CoreConfig:
    limits = Limits(
        event_ids=_int("LIMIT_EVENT_IDS", 256),
        variables=_int("LIMIT_VARIABLES", 64),
        auth_profiles=_int("LIMIT_AUTH_PROFILES", 16),
        tags=_int("LIMIT_TAGS", 32),
        historic_tags=_int("LIMIT_HISTORIC_TAGS", 16),
        sentiment_tones=_int("LIMIT_SENTIMENT_TONES", 32),
    )
    values = dict(
        lateness_ms=_int("ALLOWED_LATENESS_MS", 2000),
        retention_ms=_int("RETENTION_MINUTES", 20160) * MINUTE_MS,
        dedupe_window_ms=_int("DEDUPE_WINDOW_MINUTES", 60) * MINUTE_MS,
        billing_block_ms=_int("BILLING_BLOCK_MINUTES", 15) * MINUTE_MS,
        min_inactivity_minutes=_int("MIN_INACTIVITY_MINUTES", 5),
        max_inactivity_minutes=_int("MAX_INACTIVITY_MINUTES", 20160),
        limits=limits,
    )
    values.update(overrides)
    return CoreConfig(**values)
