"""The wall-clock half of the partition clock (R10).

``watermark = max(stream time, wall clock while caught up) - allowed lateness``. The
stream-time half lives in the core (``PartitionSessions.on_event``); this module decides
when the wall clock may be used: only while the partition is *caught up*, i.e. the next
offset this worker will process equals the partition's high-water mark.

"Next offset to process" is counted here from the records the agent has actually
handled, not from the consumer's fetch position: records that were fetched but still sit
in Faust's buffers are backlog, and closing sessions by wall clock while they wait would
close a session whose next event is already in the log (R10 forbids that).
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from faust.types import TP

log = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class PartitionProgress:
    """Per events partition: the offset after the last record the agent handled."""

    def __init__(self) -> None:
        self._next: dict[int, int] = {}

    def reset(self) -> None:
        """Forget everything: after a rebalance Faust seeks every partition back to its
        committed offset, so the previous counts no longer describe what comes next."""
        self._next.clear()

    def handled(self, partition: int, offset: int) -> None:
        if offset >= self._next.get(partition, -1):
            self._next[partition] = offset + 1

    def next_offset(self, partition: int) -> int | None:
        return self._next.get(partition)

    def start_at(self, partition: int, offset: int) -> None:
        self._next.setdefault(partition, offset)


def is_caught_up(next_offset: int | None, highwater: int | None) -> bool:
    return next_offset is not None and highwater is not None and next_offset >= highwater


class WallClock:
    """Answers "may partition p use the wall clock now?" against the live consumer."""

    def __init__(self, app, events_topic: str, lateness_ms: int,
                 clock: Callable[[], int] = now_ms) -> None:
        self.app = app
        self.topic = events_topic
        self.lateness_ms = lateness_ms
        self.clock = clock
        self.progress = PartitionProgress()

    def highwater(self, partition: int) -> int | None:
        try:
            return self.app.consumer.highwater(TP(self.topic, partition))
        except (AssertionError, KeyError, RuntimeError):   # not (or no longer) assigned
            return None

    async def _start_offset(self, partition: int) -> int:
        """Where the consumer resumed this partition after the last assignment: its
        committed offset (Faust records it when it seeks after recovery), else the log
        start (auto_offset_reset=earliest)."""
        tp = TP(self.topic, partition)
        committed = self.app.consumer._committed_offset.get(tp)
        if committed is not None:
            return committed
        earliest = await self.app.consumer.earliest_offsets(tp)
        return earliest.get(tp) or 0

    async def caught_up(self, partition: int) -> bool:
        nxt = self.progress.next_offset(partition)
        if nxt is None:
            nxt = await self._start_offset(partition)
            self.progress.start_at(partition, nxt)
        return is_caught_up(nxt, self.highwater(partition))

    async def watermark(self, partition: int) -> int | None:
        """The wall-clock watermark for ``partition``, or None while it lags."""
        if await self.caught_up(partition):
            return self.clock() - self.lateness_ms
        return None
