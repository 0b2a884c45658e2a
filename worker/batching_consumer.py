"""Faust's Kafka consumer, with whole fetched batches of the events topics handed over.

Faust delivers every record on its own: ``Consumer._drain_messages`` awaits
``wait_first(callback(message), suspend_flow.wait())`` per record (four futures), the
conductor puts it on a queue, the stream iterator takes it off, runs the ``take_events``
buffer processor, and the agent finally sees batches of them. That path caps a worker
at about 3k records/s on the 2-core test VM, whatever the agent does, and it loses
records between ``take_events`` batches (``docs/live-worker.md``).

``BatchingConsumer`` keeps everything else of Faust's consumer — group membership,
rebalances, pause/resume during table recovery, seeks, the read-offset and gap
bookkeeping, acks and offset commits — and changes one thing: records of the topics in
``batch_topics`` (the events topic and its co-partitioned ticks topic) are not passed to
the conductor one by one but collected per fetch (``getmany``) and handed to
``batch_sink`` as one list, with a single await. The settings topic takes Faust's
normal path, record by record.

Changelog records being restored (recovery of an active table partition) are applied
to the table's store per fetch too (``_restore``): Faust's recovery path costs about
300 µs per record (the per-record callback above, a queue, ``asyncio.wait_for`` per
record in ``Recovery._slurp_changelogs``), so a cold restore of 1M sessions took about
six minutes. The store is written with Faust's own ``Table.apply_changelog_batch`` (the
same call Recovery makes, for the memory store and RocksDB alike), Recovery's offset for
the partition is advanced as Recovery would advance it, and the last record of each
fetch still goes through Faust's path as a wake-up: Recovery finds its offset already
seen, skips it, and checks whether recovery is complete.

The handed-over records are tracked as unacknowledged like Faust's streams do, so a
rebalance or a shutdown waits (``Consumer.wait_empty``) until the worker acknowledged
them; the worker acknowledges a batch only after its outputs and state are durable.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Iterable

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as FaustAIOKafkaConsumer

class _ChangelogEvent:
    """A Faust ``Event`` of a raw-serialized (bytes) table and its ``Message``, as far
    as the stores' ``apply_changelog_batch`` read them (one object for both)."""

    __slots__ = ("tp", "partition", "offset", "key", "value")

    def __init__(self, tp, record) -> None:
        self.tp = tp
        self.partition = record.partition
        self.offset = record.offset
        self.key = record.key
        self.value = record.value

    @property
    def message(self) -> "_ChangelogEvent":
        return self


BatchSink = Callable[[list], Awaitable[None]]
AfterSeek = Callable[[], Awaitable[None]]

#: Default of the FETCH_MAX_WAIT_MS setting. Faust hard-codes ``fetch_max_wait_ms=1500``.
#: aiokafka keeps one fetch in flight per broker and leaves out of it the partitions
#: whose records are still buffered, so under load a fetch often covers only idle
#: partitions (ticks, settings) and the broker holds it for the full wait while the
#: events partitions fill up: every ~1.5 s the worker stalled, and latency at half load
#: was ~1.2 s (p50). A short wait ends that.
FETCH_MAX_WAIT_MS = 20


class ShortWaitConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        # read by AIOKafkaConsumer.start() when it creates its Fetcher
        consumer._fetch_max_wait_ms = getattr(self.consumer, "fetch_max_wait_ms",
                                              FETCH_MAX_WAIT_MS)
        return consumer


class BatchingConsumer(FaustAIOKafkaConsumer):
    batch_topics: frozenset[str] = frozenset()
    batch_sink: BatchSink | None = None
    after_seek: AfterSeek | None = None
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS
    restored_records: int = 0      # changelog records applied by ``_restore``

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return ShortWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def hand_over(self, topics: Iterable[str], sink: BatchSink,
                  fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
                  after_seek: AfterSeek | None = None) -> None:
        """``sink`` receives the record lists; ``after_seek`` runs right after every
        seek of the input partitions to their committed offsets (after recovery), so the
        worker can move some of them back to the offsets stored with its state."""
        self.batch_topics = frozenset(topics)
        self.batch_sink = sink
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.after_seek = after_seek

    async def perform_seek(self) -> None:
        await super().perform_seek()
        if self.after_seek is not None:
            await self.after_seek()

    async def _restore(self, recovery, tp, tp_records: list) -> bool:
        """Apply one fetch of a changelog partition under recovery to its table, in
        order, as Recovery would (see the module docstring). False: leave it to Faust."""
        table = recovery.tp_to_table.get(tp)
        if table is None or table._on_changelog_event is not None:
            return False
        offsets = recovery.active_offsets
        seen = offsets.get(tp)
        r_offset = self._read_offset[tp]
        # as Faust's path: records read before a seek are dropped; Recovery then skips
        # what it already applied (offset <= seen)
        accepted = [r for r in tp_records if r_offset is None or r.offset >= r_offset]
        if not accepted:
            return True
        events = [_ChangelogEvent(tp, r) for r in accepted
                  if seen is None or r.offset > seen]
        if events:
            table.apply_changelog_batch(events)
            offsets[tp] = events[-1].offset
        last = accepted[-1]            # offset <= offsets[tp] now: Recovery skips it
        self._read_offset[tp] = last.offset
        self.restored_records += len(events)
        await self.wait_first(self.callback(self._to_message(tp, last)),
                              self.suspend_flow.wait())
        return True

    async def _drain_messages(self, fetcher) -> None:  # pragma: no cover - needs Kafka
        """Faust's ``_drain_messages`` + ``getmany``, minus their per-record awaits and
        the round-robin reordering across partitions (order within a partition is what
        counts, and it is kept)."""
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        unacked = self._unacked_messages
        to_message = self._to_message
        app = self.app
        batch_topics = self.batch_topics
        sink = self.batch_sink
        recovery = app.tables.recovery
        if sink is None:
            raise RuntimeError("BatchingConsumer needs hand_over() before it starts")

        async def flush(batch: list) -> None:
            handing = sink(batch)
            result = await self.wait_first(handing, self.suspend_flow.wait())
            if handing not in result.done:
                # a rebalance started first: these records were not handed over, and
                # Faust seeks back to the committed offsets before resuming
                unacked.difference_update(batch)

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                records, active = await self._wait_next_records(1.0)
                generation = app.consumer_generation_id
                await self.sleep(0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    # as Faust's getmany: fetched while stopped, read again after a seek
                    try:
                        await self.perform_seek()
                    except Exception as exc:
                        self.log.warning("seek while flow not active failed: %r", exc)
                    continue
                batch: list = []
                for tp, tp_records in records.items():
                    if not (active is None or tp in active or tp in self._buffered_partitions):
                        continue
                    if app.consumer_generation_id != generation or not self.flow_active:
                        break                  # a rebalance began: Faust seeks afterwards
                    app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    fast = tp.topic in batch_topics
                    acking = acks_enabled_for(tp.topic)
                    if (not fast and not acking and recovery.in_recovery
                            and tp in recovery.active_tps
                            and await self._restore(recovery, tp, tp_records)):
                        continue
                    for record in tp_records:
                        offset = record.offset
                        r_offset = read_offset[tp]
                        if r_offset is not None and offset < r_offset:
                            continue           # read before a seek: Faust drops these too
                        if r_offset and offset - r_offset > 1 and acking:
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        message = to_message(tp, record)
                        if fast:
                            message.tracked = True
                            unacked.add(message)
                            batch.append(message)
                        else:
                            await self.wait_first(callback(message),
                                                  self.suspend_flow.wait())
                        read_offset[tp] = offset
                if batch:
                    await flush(batch)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
