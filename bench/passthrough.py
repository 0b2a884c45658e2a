"""P: raw aiokafka passthrough — the practical limit of one Python process on this machine.

Consumes the input topic with ``getmany`` (consumer group, from the earliest offset) and
produces every record unchanged (key, value) to the same partition number of an output
topic, with no decoding and no state: what any Kafka consumer/producer in Python pays
for I/O alone. Same delivery settings as the worker (acks=all, offsets committed only
after the produced records are acknowledged). Records are re-batched per partition with
``create_batch``/``send_batch`` (aiokafka's cheapest produce path; ``send()`` per record
costs several times more CPU).

Exits when ``--expect`` records went through (or after ``--idle-exit-s`` without
records) and prints one JSON line: records, first/last times (epoch s), events/s from the
first fetched record to the last acknowledged one, and the process CPU time.

    python bench/passthrough.py --src IN --dst OUT --group G --expect N
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

BATCH_BYTES = 512 * 1024


async def _send_tp(producer: AIOKafkaProducer, topic: str, partition: int, records) -> list:
    futures = []
    batch = producer.create_batch()
    for r in records:
        if batch.append(key=r.key, value=r.value, timestamp=None) is None:
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            batch.append(key=r.key, value=r.value, timestamp=None)
    if batch.record_count():
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


async def run(args) -> dict:
    consumer = AIOKafkaConsumer(
        args.src, bootstrap_servers=args.bootstrap, group_id=args.group,
        auto_offset_reset="earliest", enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024)
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=0,
                                max_batch_size=BATCH_BYTES, max_request_size=4 * BATCH_BYTES)
    await producer.start()
    await consumer.start()
    count = 0
    first = last = None
    pending: list = []
    offsets: dict = {}
    last_commit = time.monotonic()
    idle_since = time.monotonic()
    cpu0 = time.process_time()
    try:
        while count < args.expect:
            batches = await consumer.getmany(timeout_ms=200, max_records=args.max_records)
            if not batches:
                if time.monotonic() - idle_since > args.idle_exit_s:
                    break
                continue
            idle_since = time.monotonic()
            if first is None:
                first = time.time()
            lists = await asyncio.gather(*(_send_tp(producer, args.dst, tp.partition, recs)
                                           for tp, recs in batches.items()))
            for tp, recs in batches.items():
                count += len(recs)
                offsets[tp] = recs[-1].offset + 1
            for fs in lists:
                pending.extend(fs)
            if time.monotonic() - last_commit > args.commit_every_s or count >= args.expect:
                await asyncio.gather(*pending)      # acknowledged before committed
                pending = []
                await consumer.commit(dict(offsets))
                last_commit = time.monotonic()
        await asyncio.gather(*pending)
        last = time.time()
        if offsets:
            await consumer.commit(dict(offsets))
    finally:
        cpu = time.process_time() - cpu0
        await consumer.stop()
        await producer.stop()
    secs = (last - first) if first and last else None
    return {"system": "P", "records": count, "first": first, "last": last,
            "seconds": round(secs, 3) if secs else None,
            "events_per_s": round(count / secs) if secs else None,
            "cpu_s": round(cpu, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="raw aiokafka passthrough (benchmark P)")
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    ap.add_argument("--src", required=True)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--expect", type=int, required=True)
    ap.add_argument("--max-records", type=int, default=10_000)
    ap.add_argument("--commit-every-s", type=float, default=1.0)
    ap.add_argument("--idle-exit-s", type=float, default=60.0)
    args = ap.parse_args(argv)
    result = asyncio.run(run(args))
    print(orjson.dumps(result).decode(), flush=True)
    return 0 if result["records"] >= args.expect else 1


if __name__ == "__main__":
    sys.exit(main())
