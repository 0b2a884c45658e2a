"""``Publisher`` hands aiokafka complete record batches, closed.

aiokafka holds a batch that is still open for ``linger_ms`` (2 ms here) in case more
records come; a closed one leaves with the next produce request. Every batch of the
worker waits for two acknowledged deliveries (outputs, then state), so an open batch
cost ~5 ms per batch of latency (``bench/delivery_roundtrip.py``: 3.7 ms against 1.1 ms
per delivery on the local broker). This checks what is handed over, not the timing.
"""
from __future__ import annotations

import asyncio

from aiokafka.producer.message_accumulator import BatchBuilder

from worker.publisher import Publisher


class RecordingProducer:
    """create_batch/send_batch of aiokafka's producer, with aiokafka's own BatchBuilder."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.handed: list[tuple[str, int, bool, int]] = []   # topic, partition, closed, n

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, partition: int):
        self.handed.append((topic, partition, batch.closed(), batch.record_count()))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(type("Meta", (), {"offset": 0})())
        return fut


def deliver(producer: RecordingProducer, records: dict[tuple[str, int], int]):
    pub = Publisher({"bootstrap_servers": "localhost:1"}, "unit", {})
    pub.producer = producer
    outbox = pub.outbox()
    for (topic, partition), n in records.items():
        for i in range(n):
            outbox.stage(topic, partition, b"key-%d" % i, b"v" * 200)
    return asyncio.run(pub.deliver(outbox))


def test_every_batch_is_closed_before_it_is_handed_to_the_producer():
    producer = RecordingProducer(batch_size=1 << 20)
    sent = deliver(producer, {("sessions-opened", 3): 5, ("changelog", 3): 7})
    assert producer.handed == [("sessions-opened", 3, True, 5), ("changelog", 3, True, 7)]
    assert [(s.topic, s.partition, s.count) for s in sent] == [
        ("sessions-opened", 3, 5), ("changelog", 3, 7)]


def test_a_full_batch_is_closed_too_and_no_record_is_lost_when_one_topic_partition_needs_several():
    producer = RecordingProducer(batch_size=1024)     # ~4 records of 200 bytes per batch
    sent = deliver(producer, {("changelog", 0): 25})
    assert len(producer.handed) > 1
    assert all(closed for _, _, closed, _ in producer.handed)
    assert sum(n for *_, n in producer.handed) == 25
    assert sum(s.count for s in sent) == 25
