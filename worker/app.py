"""``python -m worker run``: the Faust wiring of the live worker.

Faust mechanisms used, and why:

- **Table + changelog** (``sessions``): per-key ``KeyState`` and one clock per events
  partition, restored by Faust on start and on rebalance (``worker.state_table``).
- **Recovery callback** (``Table.on_recover``, run from ``on_recovery_completed``
  before the stream resumes): rebuilds the ``PartitionSessions`` (deadline index) of
  newly assigned partitions from the table (``worker.partitions``).
- **Rebalance signal** (``app.on_partitions_assigned``): drops revoked partitions at
  once. Faust's revocation waits for every delivered record to be acknowledged, i.e.
  for the batch in flight to finish, so nothing is processed for a dropped partition.
- **Faust's consumer, batching** (``worker.batching_consumer``): group membership,
  rebalances, recovery pauses, seeks, acks and commits stay Faust's, but records of the
  events and ticks topics are handed over per fetch, as one list, to ``batch_loop``
  (``worker.processor``), instead of one by one through Faust's stream machinery.
  Records are acknowledged only after their batch's outputs and state are durable.
- **Ticks** (internal topic ``<app id>-ticks``, co-partitioned with the events): a timer
  produces one small record per owned partition every TICK_INTERVAL_MS while that
  partition has pending deadlines. The same agent consumes them, so clock-driven closes
  run inside the stream like every other state change — never concurrently with a
  batch, and never while Faust is rebalancing or recovering (the stream is paused then).
- **High-water marks** (``consumer.highwater``): the caught-up test of R10
  (``worker.clock``).
- Settings come from a group-less reader of the whole settings topic
  (``worker.settings_feed``); their dead letters from the ``settings-dlq`` agent.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import time

import faust
from faust.types import TP

from . import logs, metrics, observability
from .batching_consumer import BatchingConsumer
from .clock import WallClock
from .codec import Reject, decode_settings
from .domain import SettingsBook
from .gc_policy import GcPolicy
from .partitions import PartitionRegistry
from .processor import BatchProcessor, Deferred, fatal, finish_batch
from .publisher import DeliveryFailed, Publisher
from .settings_env import WorkerSettings, settings_from_env
from .settings_feed import SettingsFeed
from .shutdown import ShutdownDeadline
from .state_table import StateTable
from .topics import ensure_topics

log = logging.getLogger("worker")

TABLE_NAME = "sessions"
QUEUED_FETCHES = 4      # fetched record lists waiting for the batch loop (back-pressure)


class Worker:
    """Everything the Faust app needs, built once per process."""

    def __init__(self, ws: WorkerSettings, events_partitions: int, feed: SettingsFeed,
                 book: SettingsBook, publisher: Publisher) -> None:
        self.ws = ws
        self.feed = feed
        self.publisher = publisher
        rocksdb = ws.store.startswith("rocksdb:")
        self.app = app = faust.App(
            ws.app_id,
            broker=[f"kafka://{host.strip()}" for host in ws.bootstrap.split(",")],
            broker_credentials=ws.security.faust_credentials(),
            store=ws.store,
            datadir=ws.state_dir,
            env_prefix="FAUST",          # so that e.g. TOPIC_PARTITIONS is ours, not Faust's
            autodiscover=False,
            web_enabled=ws.web_port > 0,
            web_port=ws.web_port or 6066,
            web_metrics_enabled=False,       # /metrics is ours (worker.metrics.REGISTRY)
            topic_partitions=events_partitions,
            topic_replication_factor=ws.replication,
            topic_disable_leader=True,
            table_standby_replicas=0,
            stream_recovery_delay=0.5,
            # how long a crashed worker's partitions wait before another one takes them
            # over (Faust's default is 60 s); FAUST_BROKER_SESSION_TIMEOUT overrides it
            broker_session_timeout=20.0,
            # static membership: a restarted worker with the same WORKER_INSTANCE_ID takes
            # its partitions back at once instead of after the session timeout
            consumer_group_instance_id=ws.instance_id,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            stream_wait_empty=True,
        )
        self.table = app.Table(
            TABLE_NAME, partitions=events_partitions, key_type=bytes, value_type=bytes,
            options={"driver": "rocksdict"} if rocksdb else None)
        self.state = StateTable(self.table)
        self.registry = PartitionRegistry(ws.core, book, self.state)
        self.clock = WallClock(app, ws.topic_events, ws.core.lateness_ms)
        self.processor = BatchProcessor(ws, self.registry, self.state, self.publisher,
                                        self.clock, feed,
                                        generation=lambda: app.consumer_generation_id,
                                        seek=self.seek_events)
        raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw",
                   value_serializer="raw")
        self.source = app.topic(ws.topic_events, ws.topic_ticks, **raw)
        self.settings_topic = app.topic(ws.topic_settings, **raw)
        self.batches: asyncio.Queue = asyncio.Queue(maxsize=QUEUED_FETCHES)
        self.gc = GcPolicy(ws.gc_freeze_interval_s, ws.gc_full_interval_s,
                           on_full=metrics.observe_full_gc)
        self.recovered = False           # assigned partitions rebuilt since the last rebalance
        self.deadline = ShutdownDeadline(ws.shutdown_timeout_s)
        self.gauged: set[int] = set()    # partitions with gauge series (see refresh_gauges)
        self._wire()

    # -- wiring --------------------------------------------------------------------------
    def _wire(self) -> None:
        app, ws = self.app, self.ws
        self.table.on_recover(self.on_recovered)
        app.on_partitions_revoked.connect(self.on_revoked)
        app.on_partitions_assigned.connect(self.on_assigned)
        app.on_before_shutdown.connect(self.on_shutdown)
        # Faust subscribes (and co-partitions) the topics agents consume; the records of
        # this one are handed to batch_loop by the consumer, never to the agent
        app.transport.Consumer = BatchingConsumer
        app.consumer.hand_over([ws.topic_events, ws.topic_ticks], self.batches.put,
                               ws.fetch_max_wait_ms, ws.fetch_min_bytes,
                               after_seek=self.seek_to_state,
                               transactional_topics=([ws.topic_events, ws.topic_settings]
                                                     if ws.exactly_once else ()))
        app.agent(self.source, name="sessions", concurrency=1)(self.sessions_agent)
        app.task(self.batch_loop)
        app.agent(self.settings_topic, name="settings-dlq", concurrency=1)(self.settings_agent)
        app.timer(ws.tick_interval_ms / 1000.0, name="ticks")(self.send_ticks)
        app.task(self.feed.tail)
        app.timer(60.0, name="stats-log")(self.log_stats)
        app.timer(5.0, name="gauges")(self.refresh_gauges)
        if self.gc.enabled:
            app.timer(float(ws.gc_freeze_interval_s), name="gc")(self.gc_tick)
        if ws.web_port > 0:
            observability.add_routes(app, self)

    def _events_partitions(self, tps) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == self.ws.topic_events}

    async def on_revoked(self, sender, revoked, **kwargs) -> None:
        self.recovered = False
        if self.ws.exactly_once:
            await self.publisher.transaction_done()

    async def on_assigned(self, sender, assigned, **kwargs) -> None:
        self.recovered = False
        self.registry.retain(self._events_partitions(assigned))

    async def seek_events(self, partition: int, offset: int) -> None:
        await self.app.consumer.seek(TP(self.ws.topic_events, partition), offset)

    async def seek_to_state(self) -> None:
        """Runs after Faust seeks the input partitions to their committed offsets once
        recovery completed (``BatchingConsumer.perform_seek``). The table records how
        far each events partition was processed (its ``next_offset``). Offsets are
        committed only after the state is durable, so the committed offset should never
        be ahead of it; if it is (an offset committed for a record never processed), read
        again from the table's position instead of skipping records."""
        consumer = self.app.consumer
        assigned = consumer.assignment()
        for partition, nxt in sorted(self.registry.next_offset.items()):
            tp = TP(self.ws.topic_events, partition)
            if tp not in assigned:
                continue
            committed = consumer._committed_offset.get(tp)
            # never committed (or at 0): left where the consumer is (the beginning for a
            # new assignment); records the state has are skipped and their offsets
            # committed as they go. Seeking straight to ``nxt`` was tried: a partition
            # with nothing newer then stayed uncommitted (its lag shown as the whole log)
            if committed is not None and committed > nxt:
                self.processor.counts["seeks_back_to_state"] += 1
                log.warning("events partition %d: committed offset %d is ahead of the "
                            "state (%d); reading again from %d", partition, committed,
                            nxt, nxt)
                await consumer.seek(tp, nxt)

    async def on_shutdown(self, sender, **kwargs) -> None:
        # Faust sends this after its consumer stopped and every delivered record was
        # acknowledged, i.e. after the last batch (which awaited its own deliveries);
        # the consumer committed the acked offsets while stopping.
        await self.publisher.stop()
        stats = self.stats()
        log.info("stopped: %d events in %d batches; outputs %s; state writes %d; "
                 "offsets committed; leaving the group", stats["worker"].get("events", 0),
                 stats["worker"].get("batches", 0), stats["outputs"],
                 stats["worker"].get("state_writes", 0), extra={"stats": stats})
        self.deadline.mark_flushed()
        if self.ws.fault_stall_shutdown_s:
            # tests only: the stop hangs after the flush, as aiokafka's group leave can
            log.warning("FAULT_STALL_SHUTDOWN_S: stalling the stop for %d s",
                        self.ws.fault_stall_shutdown_s)
            await asyncio.sleep(self.ws.fault_stall_shutdown_s)

    async def on_recovered(self) -> None:
        # Faust runs recovery callbacks under asyncio.wait(), which swallows exceptions:
        # a failed rebuild must stop the worker instead of letting it run on without state.
        try:
            assigned = self._events_partitions(self.app.assignor.assigned_actives())
            with self.gc.paused():    # the restored state is long-lived (worker.gc_policy)
                loaded = self.registry.rebuild(assigned)
            self.clock.progress.reset()
            self.processor.guard.reset()
            self.recovered = True
            log.info("recovered: own events partitions %s (loaded %s); %d changelog "
                     "records applied in bulk so far", sorted(assigned), sorted(loaded),
                     self.app.consumer.restored_records)
        except BaseException as exc:
            fatal(f"state rebuild after recovery failed: {exc!r}", exc)

    async def sessions_agent(self, stream) -> None:
        async for event in stream.events():
            fatal(f"record {event.message.tp}@{event.message.offset} took Faust's stream "
                  "path instead of the batch loop")

    async def batch_loop(self) -> None:
        """Process what the consumer handed over, one batch at a time: fetches queued
        meanwhile are joined up to BATCH_MAX records. Once a batch is durable, its
        fetches are reported done with the offsets the consumer may commit.

        While the next fetch is already queued, a batch's state rides with the next
        batch's outputs (``BatchProcessor.handle``); as soon as the queue is empty, or
        the loop stops, a state still waiting is delivered on its own (``flush``), so a
        rebalance or a shutdown waiting for the fetches to be done never waits long."""
        queue, batch_max = self.batches, self.ws.batch_max
        processor, done = self.processor, self.app.consumer.fetches_done
        may_defer = queue.qsize                 # > 0: the next batch can carry the state
        debug = functools.partial(log.isEnabledFor, logging.DEBUG)
        carry: tuple[list, Deferred] | None = None    # batch whose state is not sent yet

        def finished(batch: list, carried, result) -> None:
            nonlocal carry
            if carried is not None:             # delivered with this batch's outputs
                done(carried[0], carried[1].offsets)
            if type(result) is Deferred:
                carry = (batch, result)
            else:
                done(batch, result)

        try:
            while True:
                if carry is not None and queue.empty():
                    (fetches, deferred), carry = carry, None
                    await finish_batch(processor.flush(deferred),
                                       functools.partial(done, fetches))
                fetch = await queue.get()
                batch, size = [fetch], len(fetch)
                while size < batch_max and not queue.empty():
                    fetch = queue.get_nowait()
                    batch.append(fetch)
                    size += len(fetch)
                if debug():
                    t0 = time.time()
                    oldest = min(r.timestamp or 0 for f in batch for r in f.records())  # ms
                carried, carry = carry, None
                await finish_batch(
                    processor.handle(batch, carried and carried[1], may_defer),
                    functools.partial(finished, batch, carried))
                if debug():
                    log.debug("batch of %d: %.1f ms (%.1f ms awaiting Kafka), oldest record "
                              "%.1f ms old, %d queued%s", size, (time.time() - t0) * 1e3,
                              processor.last_delivery_s * 1e3, t0 * 1e3 - oldest,
                              queue.qsize(), ", state deferred" if carry else "")
        finally:
            if carry is not None:               # stopping: the state must not stay behind
                (fetches, deferred), carry = carry, None
                await finish_batch(processor.flush(deferred), functools.partial(done, fetches))

    async def settings_agent(self, stream) -> None:
        """Dead-letters invalid settings records (R19) once per consumer group."""
        ws = self.ws
        # settings partition -> offset past the last record this worker dead-lettered.
        # Faust lets this agent handle records fetched before its seek to the committed
        # offsets after a recovery; when the dead letter's transaction commits after that
        # seek read the offsets, the record comes again (CI trial 20 published one twice)
        done: dict[int, int] = {}
        async for event in stream.events():
            msg = event.message
            if msg.offset < done.get(msg.partition, 0):
                self.processor.counts["settings_dead_letters_skipped"] += 1
                continue
            decoded = decode_settings(msg.key, msg.value, ws.core,
                                      self.registry.book.default, ws.max_record_bytes)
            if type(decoded) is Reject:
                outbox = self.publisher.outbox()
                outbox.dead_letter(decoded, msg.topic, msg.partition, msg.offset, msg.key,
                                   msg.value)
                log.info("settings record %d/%d dead-lettered: %s", msg.partition, msg.offset,
                         decoded.detail)
                try:
                    if ws.exactly_once:  # the dead letter and the offset past it, together
                        await self.publisher.deliver_atomically(
                            outbox, {(msg.topic, msg.partition): msg.offset + 1}, ws.app_id)
                    else:
                        await self.publisher.deliver(outbox)
                except DeliveryFailed as exc:
                    # as a failed batch: exit without committing, read it again after
                    fatal(f"settings dead letter not delivered: {exc!r}", exc)
                done[msg.partition] = msg.offset + 1

    async def send_ticks(self) -> None:
        """Wake the agent for partitions with something due by the wall clock (R6, R10),
        and once for queued settings changes (R19). ``min_due`` is a lower bound (the
        heap may hold stale entries), so a tick can be spurious, never missing."""
        if self.app.rebalancing:
            return
        horizon = self.clock.clock() - self.ws.core.lateness_ms
        need_settings = self.feed.has_pending()
        for partition, part in list(self.registry.items()):
            if part.index.min_due() <= horizon or need_settings:
                self.publisher.send_soon(self.ws.topic_ticks, partition, b"")
                need_settings = False

    # -- observability -------------------------------------------------------------------
    def is_ready(self) -> bool:
        # not ready once stopping: load balancers drain us while the last batch finishes
        return self.recovered and not self.app.rebalancing and not self.app.should_stop

    async def refresh_gauges(self) -> None:
        self.gauged = observability.refresh_gauges(self.registry, self.clock, self.is_ready(),
                                                   self.clock.clock(), self.gauged)

    def stats(self) -> dict:
        return {
            "worker": dict(self.processor.counts),
            "outputs": dict(self.publisher.counts),
            "sessions": self.registry.stats(),
            "settings": dict(self.feed.counts),
            "partitions": sorted(p for p, _ in self.registry.items()),
            "consumer": {"restored_records": self.app.consumer.restored_records,
                         "stranded_seeks": self.app.consumer.stranded_seeks,
                         "uncommitted_rereads": self.app.consumer.uncommitted_rereads,
                         "fetches_handed": self.app.consumer.fetches_handed},
        }

    async def gc_tick(self) -> None:
        self.gc.tick(time.monotonic())

    async def log_stats(self) -> None:
        log.info("stats %s", self.stats())


def main(argv: list[str] | None = None) -> int:
    if argv:
        print("usage: python -m worker run   (configured by environment variables)")
        return 2
    ws = settings_from_env()
    logs.setup(ws.log_level)        # JSON lines on stderr (worker.logs); Faust keeps its hands off
    log.info("starting: app id %s, brokers %s, security %s, store %s, %s", ws.app_id,
             ws.bootstrap, ws.security.describe(), ws.store, ws.guarantee)
    os.makedirs(ws.state_dir, exist_ok=True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    partitions = loop.run_until_complete(ensure_topics(ws))
    book = SettingsBook(ws.default_settings)
    feed = SettingsFeed(ws.kafka_kwargs(), ws.topic_settings, partitions[ws.topic_settings],
                        ws.core, book, ws.max_record_bytes)
    loop.run_until_complete(feed.load())
    publisher = Publisher(ws.kafka_kwargs(), f"{ws.app_id}-publisher", ws.output_topics,
                          transactional_id=ws.transactional_id if ws.exactly_once else None,
                          transaction_timeout_ms=ws.transaction_timeout_ms,
                          kill_before_commit=ws.fault_kill_before_commit)
    loop.run_until_complete(publisher.start([ws.topic_ticks]))
    worker = Worker(ws, partitions[ws.topic_events], feed, book, publisher)
    SignalledWorker(worker.deadline, worker.app, loop=loop, loglevel=ws.log_level,
                    override_logging=False, redirect_stdouts=False).execute_from_commandline()
    return 0


class SignalledWorker(faust.Worker):
    """Faust's worker, with the deadline on the graceful stop armed by the signal that
    starts it (SHUTDOWN_TIMEOUT_S, ``worker.shutdown``)."""

    def __init__(self, deadline: ShutdownDeadline, *args, **kwargs) -> None:
        self.deadline = deadline
        super().__init__(*args, **kwargs)

    def _schedule_shutdown(self, signal) -> None:
        self.deadline.arm(getattr(signal, "name", str(signal)))
        super()._schedule_shutdown(signal)
