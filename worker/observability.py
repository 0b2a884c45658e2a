"""Health, readiness, Prometheus metrics and a JSON stats page on WEB_PORT.

- ``/healthz``: 200 while the process serves HTTP (liveness; recovery may take long).
- ``/readyz``: 200 once the assigned partitions are recovered and consuming, 503 during
  start-up, recovery and rebalances.
- ``/metrics``: ``worker.metrics.REGISTRY`` in the Prometheus text format.
- ``/stats``: the worker's counters as JSON (for humans and the benchmarks).
- ``/sessions/{app_id}/{user_id}[?local=1]``: one key's state (``worker.lookup``).

Counters are updated once per batch from aggregated counts (``BatchMetrics``); gauges
that need a pass over a partition's keys (open sessions) are refreshed by a slow timer,
never per batch.
"""
from __future__ import annotations

import time
from collections import Counter

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import lookup, metrics
from .domain.outputs import CLOSED, NOTIFICATION, OPENED, UPGRADED

STAT_KINDS = {   # PartitionSessions.stats name -> metric
    "duplicates": (metrics.duplicates, None),
    "context_ignored": (metrics.context_ignored, None),
    "dropped_tags": (metrics.state_dropped, "tags"),
    "dropped_tones": (metrics.state_dropped, "sentiment_tones"),
    "dropped_variables": (metrics.state_dropped, "variables"),
    "dropped_auth_profiles": (metrics.state_dropped, "auth_profiles"),
    "dropped_event_ids": (metrics.state_dropped, "event_ids"),
}


def _b(value) -> str:
    return "true" if value else "false"


class BatchMetrics:
    """Aggregates one batch, then updates the Prometheus counters in one go."""

    def __init__(self) -> None:
        self._last_stats: dict[int, tuple[int, dict]] = {}

    def record(self, started: float, records: int, event_types: Counter, outs: list,
               clock_outs: list, now_ms: int, registry) -> None:
        metrics.batch_duration.observe(time.perf_counter() - started)
        metrics.batch_size.observe(records)
        for etype, n in event_types.items():
            metrics.events_consumed.labels(etype).inc(n)
        lifecycle: Counter = Counter()
        for topic, _, value in outs:
            if topic == OPENED:
                lifecycle[(OPENED, _b(value["interactive"]), _b(value["developer"]))] += 1
            elif topic == CLOSED:
                lifecycle[(CLOSED, value["reason"], _b(value["interactive"]),
                           _b(value["developer"]))] += 1
            elif topic == UPGRADED or topic == NOTIFICATION:
                lifecycle[(topic,)] += 1
        for labels, n in lifecycle.items():
            kind = labels[0]
            if kind == OPENED:
                metrics.opened.labels(*labels[1:]).inc(n)
            elif kind == CLOSED:
                metrics.closed.labels(*labels[1:]).inc(n)
            elif kind == UPGRADED:
                metrics.upgraded.inc(n)
            else:
                metrics.notifications.inc(n)
        for topic, _, value in clock_outs:     # closes by the wall clock, while caught up
            if topic == CLOSED:
                metrics.close_lateness.observe(max(0, now_ms - value["closed_at"]) / 1000)
        self._stats(registry)

    def _stats(self, registry) -> None:
        """Increment counters by what each partition's core counted since last time."""
        for partition, part in registry.items():
            ident, last = self._last_stats.get(partition, (None, {}))
            if ident != id(part):                 # a partition (re)built since
                last = {}
            now = dict(part.stats)
            for name, (metric, kind) in STAT_KINDS.items():
                delta = now.get(name, 0) - last.get(name, 0)
                if delta > 0:
                    (metric.labels(kind) if kind else metric).inc(delta)
            self._last_stats[partition] = (id(part), now)


def refresh_gauges(registry, clock, ready: bool, now_ms: int, known: set[int]) -> set[int]:
    """Per-partition gauges, from counters the core keeps (no pass over the keys).
    Returns the partitions reported, so that series of revoked ones get removed."""
    metrics.ready.set(1 if ready else 0)
    reported = set()
    for partition, part in registry.items():
        label = str(partition)
        reported.add(partition)
        metrics.open_sessions.labels(label).set(part.open_sessions)
        metrics.state_entries.labels(label).set(len(part.states))
        watermark = part.watermark
        if watermark > 0:
            metrics.watermark.labels(label).set(watermark / 1000)
            metrics.watermark_delay.labels(label).set((now_ms - watermark) / 1000)
        highwater, nxt = clock.highwater(partition), clock.progress.next_offset(partition)
        if highwater is not None and nxt is not None:
            metrics.consumer_lag.labels(label).set(max(0, highwater - nxt))
    for partition in known - reported:
        for gauge in (metrics.open_sessions, metrics.state_entries, metrics.watermark,
                      metrics.watermark_delay, metrics.consumer_lag):
            try:
                gauge.remove(str(partition))
            except KeyError:
                pass
    return reported


def add_routes(app, worker) -> None:
    """Register the HTTP routes on the Faust web server."""

    async def healthz(view, request):
        return view.text("ok\n")

    async def readyz(view, request):
        if worker.is_ready():
            return view.text("ready\n")
        return view.text("recovering\n", status=503)

    async def prometheus(view, request):
        metrics.ready.set(1 if worker.is_ready() else 0)    # as /readyz says, not 5 s old
        return view.bytes(generate_latest(metrics.REGISTRY),
                          content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def stats(view, request):
        return view.json(worker.stats())

    async def session(view, request, app_id: str, user_id: str):
        local_only = request.query.get("local", "") not in ("", "0", "false")
        status, body = await lookup.lookup(worker, app_id, user_id, local_only)
        return view.json(body, status=status)

    app.page("/healthz")(healthz)
    app.page("/readyz")(readyz)
    app.page("/metrics")(prometheus)
    app.page("/stats")(stats)
    # user ids may contain "/" (sent percent-encoded): the last segment takes the rest
    app.page("/sessions/{app_id}/{user_id:.+}")(session)
