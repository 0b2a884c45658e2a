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
to the table's store per fetch (``worker.bulk_restore``).

The handed-over records are the ones aiokafka's record reader parsed
(``worker.raw_records``: no ``ConsumerRecord`` per record), grouped per partition in a
``worker.fetches.Fetch``, not Faust messages: no ``ConsumerMessage``, ``WeakSet`` entry
or ``ack`` per record (a third of the main thread's time went there). A fetch is
acknowledged as a whole once its batch is durable (``fetches_done``, with the offsets
to commit); Faust's commits take those offsets, and a rebalance or a shutdown waits
(``wait_empty``) until every handed-over fetch was reported done.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Iterable

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as FaustAIOKafkaConsumer

from . import raw_records
from .bulk_restore import BulkRestore
from .fetches import Fetch
from .stable_offsets import require_stable_offsets

BatchSink = Callable[[list], Awaitable[None]]
AfterSeek = Callable[[], Awaitable[None]]

#: Default of the FETCH_MAX_WAIT_MS setting. Faust hard-codes ``fetch_max_wait_ms=1500``.
#: aiokafka keeps one fetch in flight per broker and leaves out of it the partitions
#: whose records are still buffered, so under load a fetch often covers only idle
#: partitions (ticks, settings) and the broker holds it for the full wait while the
#: events partitions fill up: every ~1.5 s the worker stalled, and latency at half load
#: was ~1.2 s (p50). A short wait ends that.
FETCH_MAX_WAIT_MS = 20

#: Default of the FETCH_MIN_BYTES setting (aiokafka's default: 1). With 1 byte the broker
#: answers a fetch as soon as any record arrived, so under paced traffic every fetch
#: brought a few records and the worker paid the fixed cost of a fetch, a hand-over and
#: a batch (two acknowledged deliveries), 2.5-3.8 ms of CPU, for each: at 1,000 events/s
#: it ran ~165 fetches and batches a second and used half a core. With 256 KiB the
#: broker gathers records for up to FETCH_MAX_WAIT_MS (or until there is this much), so
#: a worker runs at most ~50 fetches a second until its traffic passes 256 KiB per 20 ms
#: (~40k events/s of ~300 B), and fetches of at least 256 KiB above that; records wait
#: at most FETCH_MAX_WAIT_MS more in the broker. A backlog fills every fetch at once.
FETCH_MIN_BYTES = 256 * 1024


class ShortWaitConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        # both read by AIOKafkaConsumer.start() when it creates its Fetcher
        consumer._fetch_max_wait_ms = getattr(self.consumer, "fetch_max_wait_ms",
                                              FETCH_MAX_WAIT_MS)
        consumer._fetch_min_bytes = getattr(self.consumer, "fetch_min_bytes",
                                            FETCH_MIN_BYTES)
        # the batch topics' records reach the batch loop as aiokafka parsed them
        raw_records.install(getattr(self.consumer, "batch_topics", ()))
        if getattr(self.consumer, "read_committed", False):
            consumer._isolation_level = "read_committed"
            require_stable_offsets(consumer)      # KIP-447, see worker.stable_offsets
        return consumer

    async def seek_in_thread(self, tp, offset: int) -> None:
        """Seek from the consumer's own thread. Faust's ``seek`` calls the aiokafka
        consumer of this thread straight from the main thread; when a fetch is draining
        records here at that moment, aiokafka's ``fetched_records`` fails
        (``KeyError`` on ``del self._records[tp]``: seen, the fetcher crashed and the
        worker exited)."""
        await self.call_thread(self._ensure_consumer().seek, tp, offset)

    def position_now(self, tp) -> int | None:
        """The fetch position of ``tp`` as the aiokafka consumer holds it (no request):
        one past the last offset it delivered or skipped, None if unknown."""
        consumer = self._consumer
        if consumer is None:
            return None
        assignment = getattr(consumer._subscription.subscription, "assignment", None)
        if assignment is None or tp not in assignment.tps:
            return None
        state = assignment.state_value(tp)
        return state.position if state.has_valid_position else None


class BatchingConsumer(BulkRestore, FaustAIOKafkaConsumer):
    batch_topics: frozenset[str] = frozenset()
    batch_sink: BatchSink | None = None
    after_seek: AfterSeek | None = None
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS
    fetch_min_bytes: int = FETCH_MIN_BYTES
    #: exactly-once: topics whose offsets the worker commits in its own transactions;
    #: Faust's commits leave them alone (see ``_commit``)
    transactional_topics: frozenset[str] = frozenset()
    stranded_seeks: int = 0        # partitions sought back to fetched, undelivered records
    uncommitted_rereads: int = 0   # agent partitions read again from the beginning
    fetches_handed: int = 0        # fetches of the batch topics handed to the batch loop
    _pending_fetches: int = 0      # handed to the batch loop, not yet reported done
    _fetches_drained: asyncio.Event     # set whenever none is pending (``hand_over``)
    _done_offsets: dict                 # batch topics: tp -> offset to commit
    _stranded: dict                     # tp -> first offset fetched but not delivered

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return ShortWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _seek(self, partition, offset: int) -> None:
        # every seek (Faust's and ours) runs in the consumer thread, see seek_in_thread
        await self._thread.seek_in_thread(partition, offset)

    def hand_over(self, topics: Iterable[str], sink: BatchSink,
                  fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
                  fetch_min_bytes: int = FETCH_MIN_BYTES,
                  after_seek: AfterSeek | None = None,
                  transactional_topics: Iterable[str] = ()) -> None:
        """``sink`` receives the record lists; ``after_seek`` runs right after every
        seek of the input partitions to their committed offsets (after recovery), so the
        worker can move some of them back to the offsets stored with its state.
        ``transactional_topics`` (exactly-once mode): the worker commits these topics'
        offsets in its transactions, and the consumer reads only committed transactions
        (the changelog is written in them)."""
        self.batch_topics = frozenset(topics)
        self.batch_sink = sink
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_min_bytes = fetch_min_bytes
        self.after_seek = after_seek
        self.transactional_topics = frozenset(transactional_topics)
        self._done_offsets = {}
        self._stranded = {}
        self._fetches_drained = asyncio.Event()

    # -- acknowledgement per fetch (instead of Faust's per message) -----------------
    def fetches_done(self, fetches: list, offsets: dict) -> None:
        """The batch loop made ``fetches`` durable: ``offsets`` (tp -> next offset) may
        be committed, by Faust's periodic commit and the commit before a rebalance."""
        done = self._done_offsets
        for tp, offset in offsets.items():
            if offset > done.get(tp, -1):
                done[tp] = offset
        self._pending_fetches -= len(fetches)
        if self._pending_fetches <= 0:
            self._fetches_drained.set()

    async def _hand_over(self, fetch: Fetch) -> None:
        await self.batch_sink(fetch)
        # counted in the same step as the hand-over (no await in between): a cancelled
        # hand-over is never counted, a completed one always is
        self._pending_fetches += 1
        self.fetches_handed += 1

    def _filter_tps_with_pending_acks(self, topics=None):
        yield from super()._filter_tps_with_pending_acks(topics)
        for tp in list(self._done_offsets):
            if topics is None or tp in topics or tp.topic in topics:
                yield tp

    def _new_offset(self, tp):
        if tp.topic in self.batch_topics:
            return self._done_offsets.get(tp)   # Faust commits it if higher
        return super()._new_offset(tp)

    async def wait_empty(self) -> None:
        """Before a rebalance or a shutdown: wait until every handed-over fetch was
        processed (its batch durable), then Faust's own wait and commit."""
        while not self.should_stop and self._pending_fetches > 0:
            self._fetches_drained.clear()
            try:
                await asyncio.wait_for(self._fetches_drained.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                self.log.info("waiting for %d fetches handed to the batch loop",
                              self._pending_fetches)
        await super().wait_empty()

    async def on_partitions_assigned(self, assigned, generation_id: int = 0) -> None:
        # kept through the revocation (its commit may still send them), dropped now
        self._done_offsets = {tp: offset for tp, offset in self._done_offsets.items()
                              if tp in assigned}
        self._stranded = {tp: offset for tp, offset in self._stranded.items()
                          if tp in assigned}
        await super().on_partitions_assigned(assigned, generation_id)

    @property
    def read_committed(self) -> bool:
        """Exactly-once mode: skip records of open and aborted transactions."""
        return bool(self.transactional_topics)

    async def _commit(self, offsets) -> bool:
        """Faust's periodic commit computes its offsets from the acknowledged records,
        then awaits (a producer flush) before sending them: a transaction of ours can
        commit a higher offset in between, which Faust's commit would then move back.
        A settings dead letter would be published again after a crash, events records
        re-read (and skipped). So Faust commits only the other topics (the ticks)."""
        if self.transactional_topics:
            offsets = {tp: offset for tp, offset in offsets.items()
                       if tp.topic not in self.transactional_topics}
            if not offsets:
                return True     # already committed, in the transactions
        return await super()._commit(offsets)

    async def seek_to_committed(self):
        committed = await super().seek_to_committed()
        await self.seek_uncommitted(committed)
        return committed

    async def seek_uncommitted(self, committed: dict) -> None:
        """After the seek to the committed offsets (``committed``: what it found).

        Faust drops fetched records it cannot deliver as a rebalance begins (those
        fetched for paused partitions, and those waiting in the agents' buffers, which
        ``flow_control.clear()`` empties) and counts on this seek to read them again.
        aiokafka's ``seek_to_committed`` only moves partitions committed above offset 0,
        so on a partition never committed they were lost while it stayed with this
        worker: a settings partition holding only bad records went unread for minutes,
        and two CI runs lost a settings dead letter, probably so. Now:

        - a partition of an agent's topic (settings) with no committed offset is read
          again from the beginning. Nothing on it was committed: with exactly-once the
          offsets are fetched stable (``worker.stable_offsets``), so "none" no longer
          means "its transaction is still being completed" (reading from the beginning
          then published a settings dead letter twice). Its valid records change
          nothing when read again;
        - a partition of the batch topics is sought back to the first record dropped on
          it (``_stranded``); the worker's state skips what it already applied."""
        stranded, self._stranded = self._stranded, {}
        for tp, offset in committed.items():
            if offset or self._is_changelog_tp(tp):
                continue
            if tp.topic in self.batch_topics:
                first = stranded.get(tp)
                if first is not None:
                    await self._seek_back(tp, first, "as a rebalance began")
            elif self._thread.position_now(tp):     # None: being reset (to the beginning)
                await self.seek(tp, 0)
                self.uncommitted_rereads += 1
                self.log.info("%s: nothing committed; reading it again from the beginning",
                              tp)

    async def seek_back_stranded(self, generation: int) -> None:
        """Records were fetched for partitions that were paused by the time the fetch came
        back, so they were not delivered (as in Faust's ``getmany``), but the consumer's
        position has moved past them. Faust reads them again only if a seek follows, and
        one follows a rebalance, not a pause. So seek each such partition back to its
        first undelivered record now, unless a rebalance began (its seek does it)."""
        for tp, first in list(self._stranded.items()):
            if self.app.consumer_generation_id != generation:
                return
            if await self._seek_back(tp, first, "while the partition was paused"):
                del self._stranded[tp]

    def _strand(self, tp, offset: int) -> None:
        first = self._stranded.get(tp)
        if first is None or offset < first:
            self._stranded[tp] = offset

    async def _seek_back(self, tp, first: int, when: str) -> bool:
        """Seek ``tp`` back to ``first``, never forward: not if a seek since moved it there
        or before. True when there is nothing left to do."""
        r_offset = self._read_offset.get(tp)
        if r_offset is not None and first < r_offset:
            return True                    # read before a seek: Faust drops these too
        position = self._thread.position_now(tp)
        if position is None:
            return False                   # being reset: look again later
        if position <= first:
            return True
        try:
            await self.seek(tp, first)
        except Exception as exc:           # revoked meanwhile: the rebalance seeks it
            self.log.info("seek back of %s to %d not done: %r", tp, first, exc)
            return True
        self.stranded_seeks += 1
        self.log.warning("%s: records from offset %d were fetched %s and not delivered; "
                         "reading again from there", tp, first, when)
        return True

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
        to_message = self._to_message
        app = self.app
        batch_topics = self.batch_topics
        recovery = app.tables.recovery
        if self.batch_sink is None:
            raise RuntimeError("BatchingConsumer needs hand_over() before it starts")

        async def flush(fetch: Fetch) -> None:
            # if a rebalance starts first (or the fetch loop is cancelled on shutdown)
            # these records are not handed over; Faust seeks back to the committed
            # offsets before resuming
            await self.wait_first(self._hand_over(fetch), self.suspend_flow.wait())

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                records, active = await self._wait_next_records(1.0)
                generation = app.consumer_generation_id
                await self.sleep(0)
                if not records or self.should_stop:
                    if (self.read_committed and recovery.in_recovery and self.flow_active
                            and not self.should_stop):
                        await self._skip_markers(recovery)
                    continue
                if not self.flow_active:
                    # as Faust's getmany: fetched while stopped, read again after a seek
                    for tp, tp_records in records.items():
                        self._strand(tp, tp_records[0].offset)
                    try:
                        await self.perform_seek()
                    except Exception as exc:
                        self.log.warning("seek while flow not active failed: %r", exc)
                    continue
                batch: list = []               # (tp, records) of the batch topics
                count = 0
                ends: dict = {}
                complete = True                # every fetched record was handled
                paused = False                 # records of a paused partition dropped
                for tp, tp_records in records.items():
                    if not (active is None or tp in active or tp in self._buffered_partitions):
                        complete = False
                        paused = True
                        self._strand(tp, tp_records[0].offset)
                        continue
                    if app.consumer_generation_id != generation or not self.flow_active:
                        # a rebalance began: the seek after it reads these again
                        complete = False
                        self._strand(tp, tp_records[0].offset)
                        continue
                    app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    fast = tp.topic in batch_topics
                    acking = acks_enabled_for(tp.topic)
                    if (not fast and not acking and recovery.in_recovery
                            and tp in recovery.active_tps
                            and await self._restore(recovery, tp, tp_records)):
                        continue
                    if fast:
                        # the records themselves, no Faust message per record; the fetch
                        # is acknowledged as a whole (fetches_done). Gaps in the offsets
                        # are the worker's to judge (worker.offsets).
                        r_offset = read_offset[tp]
                        if r_offset is not None and tp_records[0].offset < r_offset:
                            # read before a seek: Faust drops these too
                            tp_records = [r for r in tp_records if r.offset >= r_offset]
                            if not tp_records:
                                continue
                        batch.append((tp, tp_records))
                        count += len(tp_records)
                        last = tp_records[-1].offset
                        read_offset[tp] = last
                        ends[tp] = last + 1
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
                        delivery = callback(to_message(tp, record))
                        waited = await self.wait_first(delivery, self.suspend_flow.wait())
                        if delivery not in waited.done:
                            # a rebalance began first: not delivered
                            complete = False
                            self._strand(tp, offset)
                            break
                        read_offset[tp] = offset
                if paused:
                    await self.seek_back_stranded(generation)
                if batch:
                    await flush(Fetch(generation, batch, ends, count))
                if complete and self.read_committed and recovery.in_recovery:
                    await self._skip_markers(recovery)   # after this fetch's records
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
