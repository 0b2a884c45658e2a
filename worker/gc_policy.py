"""The worker's garbage-collector policy: freeze long-lived state, collect the young.

The worker keeps one state object per key plus Faust's store entry and the deadline
index: millions of GC-tracked containers at 1M sessions. They are freed by reference
counting and almost never form reference cycles, yet CPython's cyclic collector scans
them again every time the old generation has grown by a quarter (a full collection:
about a second at 1M sessions, a latency spike and lost throughput). Measured on the
W benchmark (1M-event backlog, `bench/run_bench.py --only W`, one run each): 24.7k
events/s with the default collector, 33.3k with the collector disabled, 29.4k freezing
every 10 s, 32.0k freezing every second.

Policy (``GcPolicy``):

- **freeze** every ``GC_FREEZE_INTERVAL_S`` (default 1 s), and a recovery's state
  rebuild runs with the collector paused and is frozen right after (``paused``):
  ``gc.freeze()`` moves every object that is alive into the permanent generation, which
  automatic collections never scan (O(1)). The young generations are still collected
  as usual, so cycles of short-lived objects (futures, exceptions, Faust events) are
  reclaimed as before.
- **full** every ``GC_FULL_INTERVAL_S`` (default 21600 s = 6 h; 0 = never):
  ``gc.unfreeze(); gc.collect(); gc.freeze()``. A frozen object that later becomes part
  of an unreachable cycle is only reclaimed by such a pass; it bounds what freezing can
  hold back. Measured on the W benchmark with a 20 s interval: 20 objects reclaimed
  after 20 s of full load, in a 0.43 s pause with 532k objects frozen (the pause grows
  with the state, hence the long default). Its duration and yield are logged and
  exported (``sessions_gc_full_collect_seconds``, ``sessions_gc_collected_objects_total``).
- ``GC_FREEZE_INTERVAL_S=0`` keeps CPython's default behaviour (no freezing).

The schedule's time is passed in (``now`` in seconds, monotonic) so it is tested without
a clock; only the duration of a full pass is measured here.
"""
from __future__ import annotations

import contextlib
import gc as _gc
import logging
import time

log = logging.getLogger(__name__)


class GcPolicy:
    def __init__(self, freeze_interval_s: float, full_interval_s: float, gc=_gc,
                 on_full=None) -> None:
        self.freeze_interval_s = freeze_interval_s
        self.full_interval_s = full_interval_s
        self.gc = gc
        self.on_full = on_full            # called with (seconds, objects collected)
        self.last_full: float | None = None
        self.full_collections = 0

    @property
    def enabled(self) -> bool:
        return self.freeze_interval_s > 0

    def freeze(self) -> None:
        if self.enabled:
            self.gc.freeze()

    @contextlib.contextmanager
    def paused(self):
        """No automatic collection inside (a state rebuild allocates a million
        long-lived, acyclic objects: collections would only rescan them); frozen after."""
        was_enabled = self.enabled and self.gc.isenabled()
        if was_enabled:
            self.gc.disable()
        try:
            yield
        finally:
            if was_enabled:
                self.gc.enable()
            self.freeze()

    def tick(self, now: float) -> None:
        """Called every ``freeze_interval_s``: a full pass when one is due, else a freeze."""
        if not self.enabled:
            return
        if self.last_full is None:
            self.last_full = now
        if self.full_interval_s > 0 and now - self.last_full >= self.full_interval_s:
            self.last_full = now
            self.full()
        else:
            self.freeze()

    def full(self) -> int:
        """Collect everything, the frozen objects included, then freeze again."""
        gc = self.gc
        t0 = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self.full_collections += 1
        seconds = time.perf_counter() - t0
        log.info("full garbage collection: %d objects collected in %.3f s; %d frozen",
                 collected, seconds, gc.get_freeze_count())
        if self.on_full is not None:
            self.on_full(seconds, collected)
        return collected
