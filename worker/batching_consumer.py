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
``batch_sink`` as one list, with a single await. Other topics (changelogs during
recovery, the settings topic) take Faust's normal path, record by record.

The handed-over records are tracked as unacknowledged like Faust's streams do, so a
rebalance or a shutdown waits (``Consumer.wait_empty``) until the worker acknowledged
them; the worker acknowledges a batch only after its outputs and state are durable.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Iterable

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as FaustAIOKafkaConsumer

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
