"""The live worker's configuration, read once from environment variables.

Core (session-rule) settings come from ``worker.config.core_config_from_env`` (lateness,
retention, dedupe window, billing block, inactivity bounds, LIMIT_*); this module adds
what only the Kafka worker needs: broker, topic names, store, batching and ticks.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .codec import DEFAULT_FUTURE_SKEW_MS, DEFAULT_MAX_BYTES
from .config import _int, core_config_from_env
from .domain.config import CoreConfig
from .domain.outputs import CLOSED, DEAD_LETTER, NOTIFICATION, OPENED, UPGRADED
from .domain.settings import AppSettings, SettingsError, parse_settings
from .security import Security
from .security import from_env as security_from_env

EVENTS = "conversation-events"
SETTINGS = "session-settings"
AT_LEAST_ONCE = "at_least_once"
EXACTLY_ONCE = "exactly_once"


def _str(name: str, default: str) -> str:
    raw = os.environ.get(name)
    return default if raw is None or raw == "" else raw


@dataclass(frozen=True)
class WorkerSettings:
    bootstrap: str
    app_id: str                 # faust app id = consumer group id = prefix of internal topics
    topic_events: str
    topic_settings: str
    output_topics: dict         # default output topic name (domain) -> configured name
    partitions: int
    replication: int
    store: str
    state_dir: str
    future_skew_ms: int
    max_record_bytes: int
    web_port: int               # 0 disables the web server
    tick_interval_ms: int
    batch_max: int
    fetch_max_wait_ms: int
    fetch_min_bytes: int
    instance_id: str | None     # static group membership (KIP-345): stable per worker, or None
    gc_freeze_interval_s: int   # worker.gc_policy; 0 = CPython's default collector
    gc_full_interval_s: int     # full collection including frozen objects; 0 = never
    guarantee: str              # PROCESSING_GUARANTEE: at_least_once | exactly_once
    transaction_timeout_ms: int  # exactly_once: how long the broker keeps a dead worker's transaction open
    fault_kill_before_commit: int  # crash tests only: SIGKILL before committing transaction N
    shutdown_timeout_s: int     # the graceful stop's deadline (worker.shutdown); 0 = none
    fault_stall_shutdown_s: int  # tests only: the stop stalls this long after the flush
    log_level: str
    core: CoreConfig
    default_settings: AppSettings
    security: Security          # KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_* (security.py)

    def kafka_kwargs(self) -> dict:
        """Connection settings for every aiokafka client the worker creates."""
        return {"bootstrap_servers": self.bootstrap, **self.security.aiokafka_kwargs()}

    @property
    def topic_ticks(self) -> str:
        """Internal topic of clock ticks, co-partitioned with the events topic."""
        return f"{self.app_id}-ticks"

    @property
    def topic_dlq(self) -> str:
        return self.output_topics[DEAD_LETTER]

    @property
    def exactly_once(self) -> bool:
        return self.guarantee == EXACTLY_ONCE

    @property
    def transactional_id(self) -> str:
        """Stable per worker (its WORKER_INSTANCE_ID), so a restarted worker aborts the
        transaction its previous run left open at once; without one, the process id
        and a random suffix (the broker aborts a dead worker's open transaction after
        TRANSACTION_TIMEOUT_MS)."""
        if self.instance_id:
            return f"{self.app_id}-{self.instance_id}"
        return f"{self.app_id}-{os.getpid()}-{os.urandom(4).hex()}"


def default_settings_from_env(cfg: CoreConfig) -> AppSettings:
    """The settings of apps that have no settings record (DEFAULT_MODE,
    DEFAULT_INACTIVITY_MINUTES), validated like a settings record (R19)."""
    record: dict = {"app_id": "-", "mode": _str("DEFAULT_MODE", "proactive")}
    if os.environ.get("DEFAULT_INACTIVITY_MINUTES"):
        record["inactivity_minutes"] = _int("DEFAULT_INACTIVITY_MINUTES", 15)
    try:
        return parse_settings(record, "-", cfg)
    except SettingsError as err:
        raise SystemExit(f"configuration error: default settings: {err}") from None


def settings_from_env() -> WorkerSettings:
    core = core_config_from_env()
    outputs = {
        OPENED: _str("TOPIC_OPENED", OPENED),
        UPGRADED: _str("TOPIC_UPGRADED", UPGRADED),
        CLOSED: _str("TOPIC_CLOSED", CLOSED),
        NOTIFICATION: _str("TOPIC_NOTIFICATIONS", NOTIFICATION),
        DEAD_LETTER: _str("TOPIC_DLQ", DEAD_LETTER),
    }
    ws = WorkerSettings(
        bootstrap=_str("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
        app_id=_str("WORKER_APP_ID", "conversation-sessions"),
        topic_events=_str("TOPIC_EVENTS", EVENTS),
        topic_settings=_str("TOPIC_SETTINGS", SETTINGS),
        output_topics=outputs,
        partitions=_int("TOPIC_PARTITIONS", 8),
        replication=_int("TOPIC_REPLICATION_FACTOR", 1),
        store=_str("STORE", "memory://"),
        state_dir=_str("STATE_DIR", "var/state"),
        future_skew_ms=_int("FUTURE_SKEW_MS", DEFAULT_FUTURE_SKEW_MS),
        max_record_bytes=_int("MAX_RECORD_BYTES", DEFAULT_MAX_BYTES),
        web_port=_int("WEB_PORT", 6066),
        tick_interval_ms=_int("TICK_INTERVAL_MS", 500),
        batch_max=_int("BATCH_MAX", 4000),
        fetch_max_wait_ms=_int("FETCH_MAX_WAIT_MS", 20),
        fetch_min_bytes=_int("FETCH_MIN_BYTES", 256 * 1024),
        instance_id=os.environ.get("WORKER_INSTANCE_ID") or None,
        gc_freeze_interval_s=_int("GC_FREEZE_INTERVAL_S", 1),
        gc_full_interval_s=_int("GC_FULL_INTERVAL_S", 21600),
        guarantee=_str("PROCESSING_GUARANTEE", AT_LEAST_ONCE).lower(),
        transaction_timeout_ms=_int("TRANSACTION_TIMEOUT_MS", 60000),
        fault_kill_before_commit=_int("FAULT_KILL_BEFORE_COMMIT", 0),
        shutdown_timeout_s=_int("SHUTDOWN_TIMEOUT_S", 40),
        fault_stall_shutdown_s=_int("FAULT_STALL_SHUTDOWN_S", 0),
        log_level=_str("LOG_LEVEL", "info").lower(),
        core=core,
        default_settings=default_settings_from_env(core),
        security=security_from_env(),
    )
    problems = []
    if ws.partitions < 1 or ws.replication < 1:
        problems.append("TOPIC_PARTITIONS and TOPIC_REPLICATION_FACTOR must be >= 1")
    if (ws.tick_interval_ms < 10 or ws.batch_max < 1 or ws.fetch_max_wait_ms < 0
            or ws.fetch_min_bytes < 1):
        problems.append("TICK_INTERVAL_MS >= 10, BATCH_MAX >= 1, FETCH_MAX_WAIT_MS >= 0, "
                        "FETCH_MIN_BYTES >= 1")
    if ws.gc_freeze_interval_s < 0 or ws.gc_full_interval_s < 0:
        problems.append("GC_FREEZE_INTERVAL_S and GC_FULL_INTERVAL_S must be >= 0")
    if ws.guarantee not in (AT_LEAST_ONCE, EXACTLY_ONCE):
        problems.append("PROCESSING_GUARANTEE must be at_least_once or exactly_once")
    if ws.shutdown_timeout_s < 0 or ws.fault_stall_shutdown_s < 0:
        problems.append("SHUTDOWN_TIMEOUT_S and FAULT_STALL_SHUTDOWN_S must be >= 0")
    if ws.transaction_timeout_ms < 1000:
        problems.append("TRANSACTION_TIMEOUT_MS must be >= 1000")
    if not ws.store.startswith(("memory://", "rocksdb://")):
        problems.append("STORE must be memory:// or rocksdb://")
    if ws.topic_events == ws.topic_settings or len(set(outputs.values())) != len(outputs):
        problems.append("topic names must be distinct")
    if problems:
        raise SystemExit("configuration error: " + "; ".join(problems))
    return ws
