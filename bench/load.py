"""Load for the Kafka benchmarks (``make bench``): synthetic traffic onto a real broker.

Three shapes, all built on ``bench/synthetic.py`` (deterministic for a seed):

- **backlog**: N events of U users over the five synthetic apps, padded with a chat
  ``text`` field to ~300 B, in event-time order, with ``ts`` shifted so the newest event
  is "now". Produced to the input topic *before* the consumer under test starts, so the
  consumer drains a backlog (throughput = records / time from first to last processed).
- **paced**: the same traffic at R events/s (latency). Each event carries ``ts`` = the
  send time and ``sent_at_ns`` (``time.time_ns()`` when it was put in a batch; ignored by
  the worker, CONTRACT.md: extra input fields are ignored); the map event_id ->
  sent_at_ns is written to a file so a consumer of session-opened can join on
  ``trigger_event_id`` with the same host clock.
- **state**: one user message for each of N new users, ``ts`` spread so that the
  sessions' inactivity deadlines fall uniformly in [now + margin, now + inactivity]:
  N open sessions (memory, recovery) that keep closing at a steady rate (close lateness).

Records are partitioned with Kafka's default partitioner (murmur2 of the key, as the
Java client and aiokafka do) and sent with ``create_batch``/``send_batch``, one task per
partition, so the producer is not the bottleneck of the measurements.

CLI (``python bench/load.py -h``)::

    load.py backlog --topic T [--events N --users U --partitions 8]
    load.py paced   --topic T --rate R --seconds S --sent-log FILE
    load.py state   --topic T --sessions N [--margin-s 60]
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import time
from collections import defaultdict
from typing import Iterable, Sequence

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import synthetic  # noqa: E402
from worker.keyhash import partition_for  # noqa: E402

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
BATCH_BYTES = 512 * 1024
MINUTE_MS = 60_000

# -- padding: a realistic chat ``text`` field -------------------------------------------
_WORDS = ("i need to check my balance please the card was declined yesterday can you "
          "help me book a flight to berlin next friday morning what is the status of "
          "order number thanks reset password account locked again pay the bill due "
          "monday sure here is what i found for you would you like anything else your "
          "request has been submitted and a confirmation email is on its way sorry i "
          "did not understand that could you rephrase it one moment while i look it up "
          "great choice the total comes to including taxes and fees").split()


def _corpus(size: int = 1 << 17, seed: int = 11) -> str:
    rng = random.Random(seed)
    out, n = [], 0
    while n < size:
        w = rng.choice(_WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)


CORPUS = _corpus()
_SPAN = len(CORPUS) - 2048


def text_for(ev: dict, i: int) -> str | None:
    """User messages get ``text_len`` chars, agent replies ~2.5 chars per reply token."""
    if ev["type"] == "user_message":
        n = ev.get("text_len", 60)
    elif ev["type"] == "agent_message":
        n = 5 * ev.get("reply_tokens", 40) // 2
    else:
        return None
    start = (i * 7919) % _SPAN
    return CORPUS[start:start + n]


def pad(events: list[dict]) -> list[dict]:
    for i, ev in enumerate(events):
        text = text_for(ev, i)
        if text is not None:
            ev["text"] = text
    return events


def generate(n: int, users: int, seed: int = 7) -> list[dict]:
    """``n`` padded synthetic events of ``users`` users, in ts order (synthetic's base time)."""
    return pad(list(synthetic.events(n, users=users, seed=seed)))


def key_of(ev: dict) -> bytes:
    return f"{ev['app_id']}:{ev['user_id']}".encode()


class Backlog:
    """Pre-encoded events whose ``ts`` can be re-based cheaply: each value is kept as
    the bytes before and after its ts digits, so ``records(now)`` only splices numbers."""

    def __init__(self, events: Sequence[dict]) -> None:
        dumps = orjson.dumps
        self.keys, self.heads, self.tss, self.tails = [], [], [], []
        for ev in events:
            raw = dumps(ev)
            digits = b'"ts":%d' % ev["ts"]
            at = raw.index(digits) + 5
            self.keys.append(key_of(ev))
            self.heads.append(raw[:at])
            self.tss.append(ev["ts"])
            self.tails.append(raw[at + len(digits) - 5:])

    def __len__(self) -> int:
        return len(self.keys)

    def records(self, now_ms: int | None = None, limit: int | None = None
                ) -> list[tuple[bytes, bytes]]:
        """(key, value) of the first ``limit`` events, ts shifted so that the newest of
        them is ``now_ms`` (default: the wall clock)."""
        n = len(self) if limit is None else min(limit, len(self))
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        shift = now_ms - self.tss[n - 1]
        heads, tss, tails = self.heads, self.tss, self.tails
        return [(self.keys[i], b"%b%d%b" % (heads[i], tss[i] + shift, tails[i]))
                for i in range(n)]


def encode_backlog(events: Sequence[dict], now_ms: int | None = None
                   ) -> list[tuple[bytes, bytes]]:
    """(key, value) records with ts shifted so the newest event is ``now_ms``."""
    return Backlog(events).records(now_ms)


def state_records(n: int, now_ms: int, inactivity_ms: int = 15 * MINUTE_MS,
                  margin_ms: int = 60_000, apps: int = 5, seed: int = 5
                  ) -> list[tuple[bytes, bytes]]:
    """One interactive user message for each of ``n`` new users (apps ``app-0`` …, no
    settings record -> the worker's defaults, proactive 15 min). ``ts`` ascending, so
    that the deadlines ts + inactivity fall uniformly in [now + margin, now + inactivity)."""
    rng = random.Random(seed)
    lo = now_ms - inactivity_ms + margin_ms
    span = max(1, inactivity_ms - margin_ms)
    tss = sorted(lo + rng.randrange(span) for _ in range(n))
    channels = synthetic.CHANNELS
    intents = [i for i in synthetic.INTENTS if i]
    out = []
    for i, ts in enumerate(tss):
        app, user = f"app-{i % apps}", f"s{i:08d}"
        ev = {"event_id": f"st-{i:08d}", "app_id": app, "user_id": user, "ts": ts,
              "type": "user_message", "channel": channels[i % len(channels)],
              "intent": intents[i % len(intents)], "input_valid": True,
              "text_len": 120}
        ev["text"] = text_for(ev, i)
        out.append((f"{app}:{user}".encode(), orjson.dumps(ev)))
    return out


# -- partitioning ------------------------------------------------------------------------
class Partitioner:
    """Kafka's default partitioner (``worker.keyhash``, as the worker partitions its
    outputs), cached per key."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.cache: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        p = self.cache.get(key)
        if p is None:
            p = self.cache[key] = partition_for(key, self.n)
        return p


# -- admin -------------------------------------------------------------------------------
async def create_topics(names: Iterable[str], partitions: int, bootstrap: str = BOOTSTRAP,
                        compacted: Iterable[str] = ()) -> None:
    compacted = set(compacted)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(name, partitions, 1,
                        topic_configs={"cleanup.policy": "compact"} if name in compacted else {})
               for name in names if name not in existing]
        if new:
            await admin.create_topics(new)
        # wait until the metadata shows them with their partitions
        deadline = time.monotonic() + 30
        want = {t.name for t in new}
        while want and time.monotonic() < deadline:
            meta = await admin.describe_topics(sorted(want))
            want -= {m["topic"] for m in meta
                     if m.get("error_code", 0) == 0 and len(m.get("partitions") or []) == partitions}
            if want:
                await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def delete_topics_matching(tag: str, bootstrap: str = BOOTSTRAP) -> list[str]:
    """Delete every topic whose name contains ``tag`` (inputs, outputs, changelogs)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if tag in t)
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


# -- producing ---------------------------------------------------------------------------
def _producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0,
                            max_batch_size=BATCH_BYTES, max_request_size=4 * BATCH_BYTES)


async def _send_partition(producer: AIOKafkaProducer, topic: str, partition: int,
                          records: list[tuple[bytes, bytes]]) -> list:
    futures = []
    batch = producer.create_batch()
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None) is None:
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)
    if batch.record_count():
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


async def produce(topic: str, records: Sequence[tuple[bytes, bytes]], partitions: int,
                  bootstrap: str = BOOTSTRAP) -> dict:
    """Produce all records (acks=all), per-partition order preserved; returns stats."""
    part = Partitioner(partitions)
    by_part: dict[int, list] = defaultdict(list)
    for key, value in records:
        by_part[part(key)].append((key, value))
    producer = _producer(bootstrap)
    await producer.start()
    t0 = time.perf_counter()
    try:
        lists = await asyncio.gather(*(_send_partition(producer, topic, p, recs)
                                       for p, recs in by_part.items()))
        await asyncio.gather(*(f for fs in lists for f in fs))
    finally:
        await producer.stop()
    dt = time.perf_counter() - t0
    nbytes = sum(len(k) + len(v) for k, v in records)
    return {"records": len(records), "seconds": round(dt, 3),
            "records_per_s": round(len(records) / dt) if dt else None,
            "avg_value_bytes": round(sum(len(v) for _, v in records) / max(1, len(records))),
            "bytes": nbytes}


async def paced(topic: str, events: Sequence[dict], rate: float, seconds: float,
                partitions: int, bootstrap: str = BOOTSTRAP, tick_s: float = 0.005) -> dict:
    """Send ``events`` (cycled from the start if too few) at ``rate`` events/s for
    ``seconds``; each gets ts = send time (ms) and sent_at_ns. Returns stats and the
    event_id -> sent_at_ns map."""
    part = Partitioner(partitions)
    producer = _producer(bootstrap)
    await producer.start()
    sent: dict[str, int] = {}
    futures = []
    dumps = orjson.dumps
    n_total = int(rate * seconds)
    i = 0
    late_ticks = 0
    max_behind = 0.0
    try:
        t0 = time.perf_counter()
        while i < n_total:
            target = min(n_total, int((time.perf_counter() - t0) * rate) + 1)
            if target > i:
                batches: dict[int, object] = {}
                now_ns = time.time_ns()
                ts = now_ns // 1_000_000
                while i < target:
                    ev = dict(events[i % len(events)])
                    if i >= len(events):      # cycled: keep event ids unique
                        ev["event_id"] = f"{ev['event_id']}-r{i // len(events)}"
                    ev["ts"] = ts
                    ev["sent_at_ns"] = now_ns
                    key = key_of(ev)
                    p = part(key)
                    batch = batches.get(p)
                    if batch is None:
                        batch = batches[p] = producer.create_batch()
                    if batch.append(key=key, value=dumps(ev), timestamp=None) is None:
                        futures.append(await producer.send_batch(batch, topic, partition=p))
                        batch = batches[p] = producer.create_batch()
                        batch.append(key=key, value=dumps(ev), timestamp=None)
                    sent[ev["event_id"]] = now_ns
                    i += 1
                for p, batch in batches.items():
                    futures.append(await producer.send_batch(batch, topic, partition=p))
                behind = time.perf_counter() - t0 - i / rate
                max_behind = max(max_behind, behind)
                if behind > 0.05:
                    late_ticks += 1      # more than 50 ms behind schedule after a tick
            await asyncio.sleep(tick_s)
        elapsed = time.perf_counter() - t0
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {"records": i, "seconds": round(elapsed, 3), "target_rate": rate,
            "achieved_rate": round(i / elapsed) if elapsed else None,
            "behind_ticks": late_ticks, "max_behind_ms": round(max_behind * 1000, 1),
            "sent": sent}


# -- CLI ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default=BOOTSTRAP)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("backlog", help="produce N padded synthetic events (ts ends now)")
    b.add_argument("--topic", required=True)
    b.add_argument("--events", type=int, default=1_000_000)
    b.add_argument("--users", type=int, default=100_000)
    b.add_argument("--partitions", type=int, default=8)
    b.add_argument("--seed", type=int, default=7)
    p = sub.add_parser("paced", help="produce at --rate events/s, stamping sent_at_ns")
    p.add_argument("--topic", required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--seed", type=int, default=8)
    p.add_argument("--skip", type=int, default=0, help="start this far into the traffic")
    p.add_argument("--sent-log", required=True, help="JSON file: event_id -> sent_at_ns")
    s = sub.add_parser("state", help="one message for each of N new users (open sessions)")
    s.add_argument("--topic", required=True)
    s.add_argument("--sessions", type=int, default=200_000)
    s.add_argument("--partitions", type=int, default=8)
    s.add_argument("--inactivity-min", type=int, default=15)
    s.add_argument("--margin-s", type=float, default=60.0)
    args = ap.parse_args(argv)

    if args.cmd == "backlog":
        t = time.perf_counter()
        records = encode_backlog(generate(args.events, args.users, args.seed))
        print(f"generated {len(records):,} events in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        asyncio.run(create_topics([args.topic], args.partitions, args.bootstrap))
        stats = asyncio.run(produce(args.topic, records, args.partitions, args.bootstrap))
    elif args.cmd == "paced":
        n = int(args.rate * args.seconds)
        events = generate(args.skip + n, args.users, args.seed)[args.skip:]
        asyncio.run(create_topics([args.topic], args.partitions, args.bootstrap))
        # The pre-generated events are up to ~2M dicts: a full collection of them took
        # 0.3-0.7 s, and the generator then sent nothing (seen as `behind_ticks` and as
        # latency spikes of the worker under test). Frozen, collections never scan them.
        gc.collect()
        gc.freeze()
        stats = asyncio.run(paced(args.topic, events, args.rate, args.seconds,
                                  args.partitions, args.bootstrap))
        with open(args.sent_log, "wb") as fh:
            fh.write(orjson.dumps(stats.pop("sent")))
    else:
        records = state_records(args.sessions, int(time.time() * 1000),
                                args.inactivity_min * MINUTE_MS, int(args.margin_s * 1000))
        asyncio.run(create_topics([args.topic], args.partitions, args.bootstrap))
        stats = asyncio.run(produce(args.topic, records, args.partitions, args.bootstrap))
    print(orjson.dumps(stats).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
