"""Round trip of one acknowledged delivery (``Publisher.deliver``) on the local broker.

Every batch of the worker waits for two of these (its outputs, then its state), so they
sit on the latency path. Compares batches handed to aiokafka closed (what the worker
does) with batches left open, which aiokafka holds for the producer's ``linger_ms``.
Alternates the two, ``--rounds`` times; prints the median of each and their ratio.

    make kafka-up && .venv/bin/python bench/delivery_roundtrip.py
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aiokafka.producer.message_accumulator import BatchBuilder  # noqa: E402

from bench import load  # noqa: E402
from worker.publisher import Publisher  # noqa: E402


async def measure(bootstrap: str, topic: str, deliveries: int, partitions: int,
                  records: int, open_batches: bool) -> list[float]:
    pub = Publisher({"bootstrap_servers": bootstrap}, "delivery-roundtrip", {})
    await pub.start([topic])
    times = []
    try:
        keep_open = mock.patch.object(BatchBuilder, "close", lambda self: None)
        with keep_open if open_batches else contextlib.nullcontext():
            for _ in range(deliveries):
                outbox = pub.outbox()
                for p in range(partitions):
                    for k in range(records):
                        outbox.stage(topic, p, b"key-%d" % k, b"x" * 300)
                t = time.perf_counter()
                await pub.deliver(outbox)
                times.append((time.perf_counter() - t) * 1000)
    finally:
        await pub.stop()
    return times[deliveries // 10:]          # the first ones warm the connections up


async def amain(args) -> None:
    topic = f"delivery-roundtrip-{os.getpid()}"
    await load.create_topics([topic], args.partitions, args.bootstrap)
    res: dict[str, list[float]] = {"closed": [], "open": []}
    try:
        for _ in range(args.rounds):
            for label in ("open", "closed"):
                t = await measure(args.bootstrap, topic, args.deliveries, args.partitions,
                                  args.records, label == "open")
                res[label].append(statistics.median(t))
                print(f"{label:6s} batches: median {res[label][-1]:.2f} ms per delivery "
                      f"({args.partitions} partitions x {args.records} records of 300 B)")
    finally:
        await load.delete_topics_matching(topic, args.bootstrap)
    closed, opened = statistics.median(res["closed"]), statistics.median(res["open"])
    print(f"median of {args.rounds} rounds: closed {closed:.2f} ms, open {opened:.2f} ms "
          f"(open / closed = {opened / closed:.1f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS",
                                                          "127.0.0.1:9092"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--deliveries", type=int, default=300)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--records", type=int, default=40, help="records per partition")
    asyncio.run(amain(ap.parse_args()))


if __name__ == "__main__":
    main()
