"""Prometheus metrics of the worker (prometheus-client), conventional names and units.

No user ids or other high-cardinality labels: labels are event type, reason, partition
number and booleans. The shell updates counters once per batch where it can.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
NS = "sessions"

events_consumed = Counter(f"{NS}_events_consumed_total", "Valid events consumed, by type.",
                          ["type"], registry=REGISTRY)
dead_letters = Counter(f"{NS}_dead_letters_total", "Records sent to the dead-letter topic, by reason.",
                       ["reason", "topic"], registry=REGISTRY)
duplicates = Counter(f"{NS}_duplicate_events_total", "Events ignored as duplicates (R21).",
                     registry=REGISTRY)
context_ignored = Counter(f"{NS}_context_ignored_total",
                          "Context events ignored for want of an open session (R14).",
                          registry=REGISTRY)
state_dropped = Counter(f"{NS}_state_entries_dropped_total",
                        "Per-key entries dropped past a bound (R25), by kind.", ["kind"],
                        registry=REGISTRY)
opened = Counter(f"{NS}_opened_total", "Sessions opened.", ["interactive", "developer"],
                 registry=REGISTRY)
upgraded = Counter(f"{NS}_upgraded_total", "Sessions upgraded to interactive (R2).",
                   registry=REGISTRY)
closed = Counter(f"{NS}_closed_total", "Sessions closed, by reason.",
                 ["reason", "interactive", "developer"], registry=REGISTRY)
notifications = Counter(f"{NS}_notifications_total", "Closure messages published (R17).",
                        registry=REGISTRY)
settings_applied = Counter(f"{NS}_settings_applied_total",
                           "Valid settings records applied (R19).", registry=REGISTRY)
open_sessions = Gauge(f"{NS}_open", "Open sessions, per input partition.", ["partition"],
                      registry=REGISTRY)
state_entries = Gauge(f"{NS}_state_keys", "Keys with state, per input partition.",
                      ["partition"], registry=REGISTRY)
watermark = Gauge(f"{NS}_watermark_seconds", "Partition watermark (R10), epoch seconds.",
                  ["partition"], registry=REGISTRY)
watermark_delay = Gauge(f"{NS}_watermark_delay_seconds",
                        "Wall clock minus partition watermark.", ["partition"], registry=REGISTRY)
consumer_lag = Gauge(f"{NS}_consumer_lag_records",
                     "High-water mark minus consumer position, per input partition.",
                     ["partition"], registry=REGISTRY)
close_lateness = Histogram(
    f"{NS}_close_lateness_seconds",
    "Emission wall time minus deadline, for clock-driven closes while caught up.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 2.5, 3, 5, 10, 30, 60), registry=REGISTRY)
batch_duration = Histogram(
    f"{NS}_batch_duration_seconds", "Time to process one batch of records (core + publish).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY)
batch_size = Histogram(f"{NS}_batch_records", "Records per processed batch.",
                       buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000), registry=REGISTRY)
transaction_duration = Histogram(
    f"{NS}_transaction_seconds",
    "Exactly-once: begin to committed, per transaction (records sent, offsets, commit).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY)
ready = Gauge(f"{NS}_ready", "1 when assigned partitions are recovered and consuming.",
              registry=REGISTRY)

gc_full_collect_seconds = Gauge(
    f"{NS}_gc_full_collect_seconds",
    "Duration of the last full garbage collection, frozen objects included (gc_policy).",
    registry=REGISTRY)
gc_collected = Counter(f"{NS}_gc_collected_objects_total",
                       "Objects reclaimed by full garbage collections (gc_policy).",
                       registry=REGISTRY)


def observe_full_gc(seconds: float, collected: int) -> None:
    gc_full_collect_seconds.set(seconds)
    gc_collected.inc(collected)


__all__ = [name for name in dir() if not name.startswith("_")]
