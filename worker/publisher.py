"""Every record the worker writes to Kafka: outputs (CONTRACT.md), dead letters, state
changelog records and clock ticks, through one idempotent aiokafka producer of its own.

Why not Faust's producer: ``Topic.send_soon`` queues each record in Faust's
``ProducerBuffer``, which hands them to aiokafka one by one with an ``await`` each; with
acks=all that turned into roughly one produce request per record (~1 ms each, measured
~1k events/s end to end). Here a batch's records are staged per topic-partition and
handed over as whole record batches (``create_batch`` / ``send_batch``): a few awaits per
processing batch instead of one per record.

Records are partitioned like every Kafka client does for keyed records (murmur2 of the
key), so one key's outputs stay in order in one partition. ``enable_idempotence`` keeps
that order across retries.

Exactly-once (``PROCESSING_GUARANTEE=exactly_once``): a second, transactional producer
carries each batch's outputs, dead letters, changelog records and input offsets in one
Kafka transaction (``deliver_atomically``); the settings-dlq agent commits a bad
settings record's dead letter with its offset the same way. The ``transactional_id`` is
stable per worker (``WORKER_INSTANCE_ID``), so a restarted worker fences its previous run
and aborts the transaction that run left open. Ticks keep the idempotent producer (a
repeated tick changes nothing).
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import Counter, defaultdict

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from . import metrics
from .codec import Reject, dead_letter
from .domain.outputs import DEAD_LETTER, Output
from .keyhash import partition_for

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT_S = 120.0
MAX_BATCH_BYTES = 512 * 1024


class DeliveryFailed(RuntimeError):
    """Kafka did not acknowledge a batch's records: the batch must not be acknowledged
    either (the worker exits and processes it again after the restart)."""


class Sent:
    """One record batch handed to the producer: its future and what it holds."""

    __slots__ = ("future", "topic", "partition", "count")

    def __init__(self, future, topic: str, partition: int, count: int) -> None:
        self.future = future
        self.topic = topic
        self.partition = partition
        self.count = count

    def last_offset(self) -> int:
        return self.future.result().offset + self.count - 1


class Outbox:
    """Records staged by one writer (one batch) per topic-partition, until delivered."""

    def __init__(self, publisher: "Publisher") -> None:
        self.publisher = publisher
        self.staged: dict[tuple[str, int], list] = defaultdict(list)

    def __bool__(self) -> bool:
        return bool(self.staged)

    def take(self, other: "Outbox") -> None:
        """Stage what ``other`` holds after what this one holds, and empty ``other``."""
        staged = self.staged
        for tp, records in other.staged.items():
            staged[tp].extend(records)
        other.staged = defaultdict(list)

    def stage(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        self.staged[(topic, partition)].append((key, value))

    def stage_keyed(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Partition like Kafka clients do for keyed records: murmur2 of the key
        (``worker.keyhash``, compiled by ``make native``)."""
        n = self.publisher.partitions[topic]
        partition = 0 if key is None else partition_for(key, n)
        self.staged[(topic, partition)].append((key, value))

    def publish(self, outputs: list[Output]) -> None:
        names, dumps, stage = self.publisher.names, orjson.dumps, self.stage_keyed
        for topic, key, value in outputs:
            stage(names[topic], key.encode(), dumps(value))
        self.publisher.counts.update(topic for topic, _, _ in outputs)

    def dead_letter(self, reject: Reject, topic: str, partition: int, offset: int,
                    key: bytes | None, value: bytes | None) -> None:
        """R20/R19: the rejected record goes to the DLQ under its original key."""
        record = dead_letter(reject, topic, partition, offset, key, value)
        self.stage_keyed(self.publisher.names[DEAD_LETTER], key, orjson.dumps(record))
        counts = self.publisher.counts
        counts[DEAD_LETTER] += 1
        counts[f"dead_letter.{reject.reason}"] += 1
        metrics.dead_letters.labels(reject.reason, topic).inc()


class Publisher:
    def __init__(self, kafka_kwargs: dict, client_id: str, output_topics: dict[str, str],
                 transactional_id: str | None = None, transaction_timeout_ms: int = 60_000,
                 kill_before_commit: int = 0, **producer_kwargs) -> None:
        self.names = dict(output_topics)          # default name -> configured name
        self.producer_kwargs = dict(
            **kafka_kwargs, client_id=client_id, acks="all",
            enable_idempotence=True, linger_ms=2, max_batch_size=MAX_BATCH_BYTES,
            max_request_size=2 * MAX_BATCH_BYTES, **producer_kwargs)
        self.transactional_id = transactional_id
        self.transaction_timeout_ms = transaction_timeout_ms
        self.producer: AIOKafkaProducer | None = None
        self.txn_producer: AIOKafkaProducer | None = None   # exactly-once only
        self.partitions: dict[str, int] = {}
        self.counts: Counter[str] = Counter()
        self.transactions = 0
        # fault injection for the crash tests (FAULT_KILL_BEFORE_COMMIT): SIGKILL this
        # process once the Nth transaction's records are written, before its commit
        self.kill_before_commit = kill_before_commit
        self._txn_lock = asyncio.Lock()     # the batch loop and the settings-dlq agent

    async def start(self, topics: list[str]) -> None:
        # aiokafka binds its clients to the running loop: create them in here
        self.producer = AIOKafkaProducer(**self.producer_kwargs)
        await self.producer.start()
        if self.transactional_id is not None:
            # start() runs InitProducerId: fences a previous run with the same id and
            # aborts the transaction it left open
            self.txn_producer = AIOKafkaProducer(
                **self.producer_kwargs, transactional_id=self.transactional_id,
                transaction_timeout_ms=self.transaction_timeout_ms)
            await self.txn_producer.start()
        for topic in set(topics) | set(self.names.values()):
            await self.add_topic(topic)

    async def add_topic(self, topic: str) -> None:
        """Learn ``topic``'s partitions and keep it in the producers' metadata. aiokafka's
        ``partitions_for`` does not track a topic it already knows from the client's
        first (all-topics) metadata fetch; once any other topic is tracked (the changelog,
        created later), refreshes ask for tracked topics only and forget the untracked
        ones. Record batches of a forgotten topic then wait for a leader until they expire
        (40 s): seen with exactly-once on a fresh broker, where output batches waited in
        a transaction while the changelog topic's first send refreshed the metadata."""
        for producer in (self.producer, self.txn_producer):
            if producer is not None:
                await producer.client.add_topic(topic)
        self.partitions[topic] = len(await self.producer.partitions_for(topic))

    async def stop(self) -> None:
        if self.txn_producer is not None:
            await self.txn_producer.stop()
        await self.producer.stop()

    def outbox(self) -> Outbox:
        return Outbox(self)

    async def _send(self, outbox: Outbox, producer: AIOKafkaProducer) -> list[Sent]:
        """Hand every staged record to ``producer``, one record batch per
        topic-partition (more when one would exceed MAX_BATCH_BYTES).

        Every batch is closed before it is handed over: aiokafka holds an open batch
        for ``linger_ms`` in case more records come, a closed one goes out with the next
        request. Measured against the local broker (``bench/delivery_roundtrip.py``):
        3.7 ms per acknowledged delivery with open batches, 1.1 ms closed; a batch of
        the worker waits for one or two deliveries (``worker.processor``)."""
        staged, outbox.staged = outbox.staged, defaultdict(list)
        sent = []

        async def hand_over(batch, topic: str, partition: int, count: int) -> None:
            batch.close()
            sent.append(Sent(await producer.send_batch(batch, topic, partition=partition),
                             topic, partition, count))

        for (topic, partition), records in staged.items():
            batch, count = producer.create_batch(), 0
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    await hand_over(batch, topic, partition, count)
                    batch, count = producer.create_batch(), 0
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise DeliveryFailed(f"record of {len(value or b'')} bytes does "
                                             f"not fit in a batch for {topic}")
                count += 1
            await hand_over(batch, topic, partition, count)
        return sent

    async def deliver(self, outbox: Outbox, timeout: float = DELIVERY_TIMEOUT_S) -> list[Sent]:
        """Send what ``outbox`` holds and wait until Kafka acknowledged all of it
        (acks=all). Raises DeliveryFailed."""
        try:
            sent = await self._send(outbox, self.producer)
            if sent:
                await asyncio.wait_for(asyncio.gather(*(s.future for s in sent)), timeout)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            raise DeliveryFailed(f"records not delivered: {err!r}") from err
        return sent

    async def transaction_done(self) -> None:
        """Returns once no transaction is in flight. A rebalance waits for it before it
        lets partitions go: the next owner reads committed offsets and state when it
        takes them over. The stable offset fetch (``worker.stable_offsets``) waits for a
        transaction whose offsets were already sent, not for one that sends them after
        that read, and aiokafka's offset commits are not fenced by the group generation:
        such a transaction would make the next owner apply the same records again."""
        async with self._txn_lock:
            pass

    async def deliver_atomically(self, outbox: Outbox, offsets: dict[tuple[str, int], int],
                                 group_id: str,
                                 timeout: float = DELIVERY_TIMEOUT_S) -> list[Sent]:
        """Exactly-once: what ``outbox`` holds and the consumer group's ``offsets``
        ((topic, partition) -> next offset) in one transaction, committed before this
        returns. Raises DeliveryFailed; the transaction is then left unfinished (the
        caller exits, and the restarted worker's producer aborts it)."""
        producer = self.txn_producer
        if producer is None:
            raise RuntimeError("deliver_atomically needs a transactional_id")
        if not outbox and not offsets:
            return []
        async with self._txn_lock:
            return await self._transaction(producer, outbox, offsets, group_id, timeout)

    async def _transaction(self, producer: AIOKafkaProducer, outbox: Outbox,
                           offsets: dict[tuple[str, int], int], group_id: str,
                           timeout: float) -> list[Sent]:
        started = time.monotonic()
        records = sum(len(r) for r in outbox.staged.values())
        try:
            await producer.begin_transaction()
            sent = await self._send(outbox, producer)
            if offsets:
                await producer.send_offsets_to_transaction(
                    {TopicPartition(t, p): o for (t, p), o in offsets.items()}, group_id)
            # Every record batch must be acknowledged *before* the commit: aiokafka fails
            # a batch whose partition has had no known leader for request_timeout_ms
            # (NotLeaderForPartitionError, MessageAccumulator.drain_by_nodes) without
            # telling its transaction manager, and commit_transaction then commits the
            # transaction without those records (seen in a CI run on a fresh broker).
            if sent:
                await asyncio.wait_for(asyncio.gather(*(s.future for s in sent)), timeout)
            if self.kill_before_commit == self.transactions + 1:
                log.warning("FAULT_KILL_BEFORE_COMMIT: killing this worker before the "
                            "commit of transaction %d", self.transactions + 1)
                os.kill(os.getpid(), signal.SIGKILL)
            await asyncio.wait_for(producer.commit_transaction(), timeout)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            raise DeliveryFailed(f"transaction not committed: {err!r}") from err
        self.transactions += 1
        took = time.monotonic() - started
        metrics.transaction_duration.observe(took)
        if took * 1000 > self.transaction_timeout_ms / 4:
            log.warning("transaction of %d records took %.1f s (TRANSACTION_TIMEOUT_MS %d)",
                        records, took, self.transaction_timeout_ms)
        return sent

    def send_soon(self, topic: str, partition: int, value: bytes) -> None:
        """Fire and forget (clock ticks): failures are only logged."""
        async def send() -> None:
            try:
                await self.producer.send(topic, value, partition=partition)
            except Exception as err:                        # pragma: no cover
                log.warning("tick to %s/%d not sent: %r", topic, partition, err)
        asyncio.ensure_future(send())
