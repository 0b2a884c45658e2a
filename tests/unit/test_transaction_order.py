"""``Publisher.deliver_atomically`` commits only what Kafka acknowledged (README
"Guarantees", exactly-once). aiokafka can fail a record batch of a transaction (a
partition without a known leader for request_timeout_ms) without failing the
transaction: the commit would then go through without those records. So every batch
must be acknowledged before the commit is even asked for."""
from __future__ import annotations

import asyncio

import pytest

from aiokafka.errors import NotLeaderForPartitionError

from worker.publisher import DeliveryFailed, Publisher


class FakeBatch:
    def __init__(self) -> None:
        self.records: list = []

    def append(self, key, value, timestamp):
        self.records.append((key, value))
        return object()

    def close(self) -> None:
        pass


class FakeTransactionalProducer:
    def __init__(self, fail_topic: str | None = None) -> None:
        self.fail_topic = fail_topic
        self.calls: list[str] = []

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def begin_transaction(self) -> None:
        self.calls.append("begin")

    async def send_batch(self, batch, topic, partition):
        self.calls.append(f"send {topic}/{partition}")
        fut = asyncio.get_running_loop().create_future()
        if topic == self.fail_topic:
            fut.set_exception(NotLeaderForPartitionError())
        else:
            fut.set_result(type("Meta", (), {"offset": 0})())
        return fut

    async def send_offsets_to_transaction(self, offsets, group_id) -> None:
        self.calls.append("offsets")

    async def commit_transaction(self) -> None:
        self.calls.append("commit")


def deliver(producer: FakeTransactionalProducer):
    pub = Publisher({"bootstrap_servers": "localhost:1"}, "unit", {}, transactional_id="t")
    pub.txn_producer = producer
    outbox = pub.outbox()
    outbox.stage("outputs", 0, b"k", b"v")
    outbox.stage("changelog", 0, b"k", b"state")
    return asyncio.run(pub.deliver_atomically(outbox, {("events", 0): 10}, "group"))


def test_a_failed_record_batch_means_no_commit():
    producer = FakeTransactionalProducer(fail_topic="outputs")
    with pytest.raises(DeliveryFailed):
        deliver(producer)
    assert "commit" not in producer.calls


def test_records_offsets_then_commit_when_every_batch_is_acknowledged():
    producer = FakeTransactionalProducer()
    sent = deliver(producer)
    assert producer.calls == ["begin", "send outputs/0", "send changelog/0", "offsets",
                              "commit"]
    assert [(s.topic, s.count) for s in sent] == [("outputs", 1), ("changelog", 1)]


class SlowCommitProducer(FakeTransactionalProducer):
    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def commit_transaction(self) -> None:
        await self.release.wait()
        self.calls.append("commit")


def test_a_rebalance_waits_for_the_transaction_in_flight_exactly_once():
    """``transaction_done`` (awaited by the worker when partitions are revoked) returns
    only after the transaction in flight committed: the next owner of a partition must
    not read its committed offsets or state before then."""
    async def scenario() -> list[str]:
        producer = SlowCommitProducer()
        pub = Publisher({"bootstrap_servers": "localhost:1"}, "unit", {}, transactional_id="t")
        pub.txn_producer = producer
        outbox = pub.outbox()
        outbox.stage("dlq", 0, b"k", b"dead letter")
        txn = asyncio.create_task(pub.deliver_atomically(outbox, {("settings", 3): 8}, "g"))
        await asyncio.sleep(0.01)                    # the transaction awaits its commit
        revoke = asyncio.create_task(pub.transaction_done())
        await asyncio.sleep(0.01)
        assert not revoke.done()
        producer.calls.append("release")
        producer.release.set()
        await revoke
        producer.calls.append("revoked")
        await txn
        return producer.calls

    calls = asyncio.run(scenario())
    assert calls.index("commit") < calls.index("revoked")
