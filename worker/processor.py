"""The hot path: one batch of Kafka records in, outputs and state writes out.

A batch (``worker.fetches.Fetch`` groups of aiokafka's parsed records, handed over by
``worker.batching_consumer``) mixes records of every assigned partition of the events
topic and of the co-partitioned ticks topic. For each batch, in this order:

1. settings changes queued by the settings feed are applied (R19, "at once");
2. each events record is decoded (R20 rejects -> dead letter) and handed to its
   partition's ``PartitionSessions`` (stream time, closes, the event itself: R10, R1-R21);
3. every partition that had a record (event or tick) advances its clock to the wall
   clock minus lateness, but only while it is caught up (R10, ``worker.clock``);
4. all outputs and dead letters are sent, and *awaited* (acks=all);
5. only then are the changed keys and moved clocks written to the table (changelog),
   and awaited too; the batch's fetches are reported done, with the offsets returned
   here, only after we return, so Faust commits them only after outputs and state are
   durable (at-least-once; a
   re-delivered event is a duplicate of the restored state and emits nothing, R21).
   When the next fetch is already queued (``may_defer``), the state is not sent on its
   own: it is returned as a ``Deferred`` and goes out with the next batch's outputs, in
   that batch's step 4 (one acknowledged delivery per batch instead of two while the
   worker is busy). The order that matters holds: a batch's state is sent only after
   its outputs were acknowledged, and its fetches are reported done only once its state
   is. A crash in between is the crash between steps 4 and 5, one batch later: the
   records are processed again from the stored position (duplicates, never a loss).
   The clock record carries the partition's next offset, so after a restart or a
   rebalance records the table already reflects are skipped, not processed again
   (``worker.partitions``). With ``PROCESSING_GUARANTEE=exactly_once``, 4 and 5 are one
   Kafka transaction that also commits the events partitions' next offsets: outputs,
   state and position become visible together or not at all. Either way the local
   store takes the state only once Kafka has it (``StateTable.settle``);
6. partitions where records were found missing are sought back to the first missing
   offset (``worker.offsets``), so they are read again before anything after them.

Records fetched in an earlier consumer generation are dropped (they are read again
after the rebalance's seek), and records below the partition's stored ``next_offset``
are skipped (``worker.partitions``): each record is applied once, in offset order.

Nothing here awaits per record: two deliveries per batch (outputs, then state), one
while batches queue up (this batch's outputs with the previous batch's state), or one
transaction.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any, Awaitable, Callable

from .clock import WallClock
from .codec import Reject, decode_event
from .fetches import Fetch
from .observability import BatchMetrics
from .offsets import DROP_AND_SEEK, SKIP, OffsetGuard
from .partitions import PartitionRegistry
from .publisher import Outbox, Publisher
from .settings_env import WorkerSettings
from .settings_feed import SettingsFeed
from .shutdown import exit_now
from .state_table import StateTable

log = logging.getLogger(__name__)

EXIT_BATCH_FAILED = 70


class Deferred:
    """The changelog records of a batch whose outputs Kafka has acknowledged, staged but
    not sent: they go out with the next batch's outputs (``BatchProcessor.handle``) or on
    their own (``BatchProcessor.flush``). ``offsets`` are the batch's committable offsets,
    valid once these records are acknowledged."""

    __slots__ = ("outbox", "settle", "offsets")

    def __init__(self, outbox: Outbox, settle: list, offsets: dict) -> None:
        self.outbox = outbox
        self.settle = settle          # StateTable.take_unsettled(): RocksDB's writes
        self.offsets = offsets


class BatchProcessor:
    def __init__(self, ws: WorkerSettings, registry: PartitionRegistry, table: StateTable,
                 publisher: Publisher, clock: WallClock, feed: SettingsFeed,
                 generation: Callable[[], int] = lambda: 0,
                 seek: Callable[[int, int], Awaitable[None]] | None = None) -> None:
        self.generation = generation      # the consumer group generation now
        self.events_topic = ws.topic_events
        self.max_bytes = ws.max_record_bytes
        self.future_skew_ms = ws.future_skew_ms
        self.registry = registry
        self.table = table
        self.publisher = publisher
        self.clock = clock
        self.feed = feed
        self.counts: Counter[str] = Counter()
        self.metrics = BatchMetrics()
        self.guard = OffsetGuard(registry.next_offset)
        self.seek = seek
        self.exactly_once = ws.exactly_once
        self.group_id = ws.app_id             # Faust's consumer group
        self.last_delivery_s = 0.0            # of the last batch: awaiting Kafka's acks

    async def handle(self, batch: list[Fetch], carried: Deferred | None = None,
                     may_defer: Callable[[], bool] | None = None) -> dict | Deferred:
        """Process ``batch`` (fetches, in order) and make its effects durable; returns the
        offsets the consumer may commit (topic-partition -> next offset).

        ``carried``, the previous batch's state, is delivered with this batch's outputs:
        once this returns, its offsets may be committed. When ``may_defer()`` is true
        after the outputs were acknowledged (the next fetch is waiting; never with
        exactly-once), the state is not sent: the ``Deferred`` is returned instead, for
        the next call (or ``flush``)."""
        started = time.perf_counter()
        registry = self.registry
        now = self.clock.clock()
        outs: list = []
        clock_outs: list = []
        event_types: Counter[str] = Counter()
        outbox = self.publisher.outbox()

        for app_id, settings in self.feed.drain():                       # 1
            registry.book.put(app_id, settings)
            outs.extend(registry.on_settings_changed(app_id))
            self.counts["settings_changes"] += 1

        seen: set[int] = set()
        events_topic = self.events_topic
        progress = self.clock.progress
        verdict = self.guard.verdict
        counts = self.counts
        to_seek: set[int] = set()
        generation = self.generation()
        max_bytes, future_skew_ms = self.max_bytes, self.future_skew_ms
        done: dict = {}                   # topic-partition -> offset to commit after this
        n_records = 0
        for fetch in batch:                                              # 2
            n_records += fetch.count
            if fetch.generation != generation:
                # Fetched before the last rebalance but still queued for the batch loop
                # (as in faust-streaming #221/#236): after the rebalance Faust seeks back
                # to the committed offset, so these records come again, in order.
                counts["stale_generation_dropped"] += fetch.count
                continue
            done.update(fetch.ends)
            for tp, records in fetch.groups:
                partition = tp.partition
                seen.add(partition)
                if tp.topic != events_topic:
                    counts["ticks"] += len(records)
                    continue
                part = registry.get(partition)
                for msg in records:
                    offset = msg.offset
                    v = verdict(partition, offset)             # worker.offsets
                    if v:
                        if v == SKIP:                          # the table already has it
                            counts["replayed_skipped"] += 1
                            progress.handled(partition, offset)
                        elif v == DROP_AND_SEEK:
                            counts["gap_seeks"] += 1
                            to_seek.add(partition)
                        else:
                            counts["gap_dropped"] += 1
                        continue
                    progress.handled(partition, offset)
                    key = msg.key
                    value = msg.value
                    decoded = decode_event(key, value, now, max_bytes, future_skew_ms)
                    if type(decoded) is Reject:
                        outbox.dead_letter(decoded, events_topic, partition, offset, key,
                                           value)
                        continue
                    event_types[decoded.type] += 1
                    outs.extend(part.on_event(decoded))

        resync = self.guard.resync
        for partition in sorted(seen):                                   # 3
            if partition not in registry:     # a late tick for a partition given away
                continue
            if partition in resync:           # records are missing: not caught up (R10)
                continue
            watermark = await self.clock.watermark(partition)
            if watermark is not None:
                clock_outs.extend(registry.get(partition).advance_to(watermark))

        outs.extend(clock_outs)
        outbox.publish(outs)                                             # 4
        waited = time.perf_counter()
        if not self.exactly_once:
            if carried is None:
                await self.publisher.deliver(outbox)
            else:              # the previous batch's outputs are acknowledged: its state
                outbox.take(carried.outbox)
                self.table.settle(await self.publisher.deliver(outbox), carried.settle)
                self.counts["states_deferred"] += 1
        waited = time.perf_counter() - waited

        offsets: dict[tuple[str, int], int] = {}
        for partition, (dirty, clock) in registry.collect_writes().items():  # 5
            self.counts["state_writes"] += self.table.write(outbox, partition, dirty, clock)
            if clock is not None and len(clock) > 2:
                offsets[(events_topic, partition)] = clock[2]
        unsettled = self.table.take_unsettled()
        defer = not self.exactly_once and may_defer is not None and bool(may_defer())
        t = time.perf_counter()
        if self.exactly_once:
            sent = await self.publisher.deliver_atomically(outbox, offsets, self.group_id)
            self.table.settle(sent, unsettled)
        elif not defer:
            self.table.settle(await self.publisher.deliver(outbox), unsettled)
        self.last_delivery_s = waited + time.perf_counter() - t   # awaiting Kafka
        for partition in sorted(to_seek):                                # 6
            nxt = self.guard.next_offset[partition]
            log.warning("events partition %d: records from offset %d were not delivered; "
                        "reading again from there", partition, nxt)
            if self.seek is not None:
                await self.seek(partition, nxt)
        self.counts["batches"] += 1
        self.counts["events"] += sum(event_types.values())
        self.metrics.record(started, n_records, event_types, outs, clock_outs, now, registry)
        committable = self._committable(done)
        return Deferred(outbox, unsettled, committable) if defer else committable

    async def flush(self, deferred: Deferred) -> dict:
        """Deliver a deferred state on its own (no batch came to carry it); returns its
        batch's committable offsets."""
        t = time.perf_counter()
        self.table.settle(await self.publisher.deliver(deferred.outbox), deferred.settle)
        self.last_delivery_s = time.perf_counter() - t
        self.counts["states_flushed"] += 1
        return deferred.offsets

    def _committable(self, done: dict) -> dict:
        """The offsets the consumer may commit now that the batch is durable: one past the
        last record of each topic-partition, but for an events partition never past the
        position stored with its state (records dropped after a gap are read again from
        there, worker.offsets); nothing for an events partition no longer held."""
        next_offset = self.guard.next_offset
        events_topic = self.events_topic
        out = {}
        for tp, end in done.items():
            if tp[0] == events_topic:
                stored = next_offset.get(tp[1])
                if stored is None:
                    continue
                end = min(end, stored)
            out[tp] = end
        return out


def fatal(message: str, exc: BaseException | None = None) -> None:
    """Stop the process *now*, without committing anything.

    Continuing after a failed batch is not safe: its outputs may be half sent and its
    state half written, and a task error makes Faust's consumer commit
    (``Consumer.on_task_error``). Exiting without a commit (and without acking the batch)
    makes its records be processed again after the restart, from the offset stored with
    the state.
    """
    log.critical(message, exc_info=exc)
    exit_now(EXIT_BATCH_FAILED)


async def finish_batch(coro, then: Callable[[Any], None] | None = None):
    """Run one batch to completion even if the batch loop is cancelled meanwhile.

    Faust cancels the app's tasks when it stops; a batch cut in half would have sent
    outputs without writing their state. So the batch runs in its own task; a
    cancellation of the loop waits for it and is re-raised afterwards, after ``then``
    received the batch's result. Returns that result.
    """
    task = asyncio.ensure_future(coro)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
        except BaseException:
            break
    if task.cancelled():
        fatal("batch task was cancelled")
    exc = task.exception()
    if exc is not None:
        fatal(f"batch failed: {exc!r}", exc)
    result = task.result()
    if then is not None:          # even when cancelled meanwhile: the batch is durable
        then(result)
    if cancelled:
        raise asyncio.CancelledError()
    return result
