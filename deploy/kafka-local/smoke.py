"""Smoke test for the local Kafka broker (deploy/kafka-local).

Creates an 8-partition topic, produces and consumes a record through a consumer
group, then checks transactions: two committed and one aborted transaction, read
back with isolation_level=read_committed. Deletes its topic. Exits 1 on failure.

Usage: smoke.py [HOST:PORT]   (default 127.0.0.1:$KAFKA_PORT or 127.0.0.1:9092)
"""

import asyncio
import os
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

PARTITIONS = 8


async def consume(bootstrap, topic, want, **kw):
    """Read `topic` until `want` records arrive (or 30 s); return {partition: [values]}."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", **kw
    )
    await consumer.start()
    got, n = {}, 0
    try:
        deadline = time.monotonic() + 30
        while n < want and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                got.setdefault(tp.partition, []).extend(r.value for r in records)
                n += len(records)
        if kw.get("group_id"):
            await consumer.commit()
    finally:
        await consumer.stop()
    return got


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok: {what}")


async def smoke(bootstrap):
    run = uuid.uuid4().hex[:8]
    topic = f"smoke-{run}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
        meta = await admin.describe_topics([topic])
        check(len(meta[0]["partitions"]) == PARTITIONS, f"topic {topic} has {PARTITIONS} partitions")

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"plain", partition=3)
        finally:
            await producer.stop()
        got = await consume(bootstrap, topic, 1, group_id=f"smoke-group-{run}")
        check(got == {3: [b"plain"]}, "plain produce/consume through a consumer group")

        tx = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"smoke-tx-{run}")
        await tx.start()
        try:
            for values, commit in (([b"tx1-a", b"tx1-b"], True), ([b"aborted"], False), ([b"tx3"], True)):
                await tx.begin_transaction()
                for v in values:
                    await tx.send_and_wait(topic, v, partition=5)
                await (tx.commit_transaction() if commit else tx.abort_transaction())
        finally:
            await tx.stop()
        got = await consume(bootstrap, topic, 4, isolation_level="read_committed")
        want = {3: [b"plain"], 5: [b"tx1-a", b"tx1-b", b"tx3"]}
        check(got == want, f"read_committed sees the committed transactions only: {got}")
        got = await consume(bootstrap, topic, 5, isolation_level="read_uncommitted")
        check(b"aborted" in got.get(5, []), "read_uncommitted also sees the aborted record")
    finally:
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()


def main():
    default = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
    bootstrap = sys.argv[1] if len(sys.argv) > 1 else default
    start = time.monotonic()
    try:
        asyncio.run(smoke(bootstrap))
    except Exception as exc:  # noqa: BLE001 - report any failure as a failed smoke test
        print(f"FAIL: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"kafka smoke test passed against {bootstrap} in {time.monotonic() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
