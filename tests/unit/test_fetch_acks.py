"""Acknowledgement per fetch (``BatchingConsumer.fetches_done``): the offsets Faust's
commits take for the batch topics come from the batch loop once a batch is durable,
never from records merely handed over; a rebalance or a shutdown waits for every
handed-over fetch. The crash and restart tests prove the same against a real broker."""
from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

from faust.transport.drivers.aiokafka import Consumer as FaustAIOKafkaConsumer
from faust.types import TP

from worker.batching_consumer import BatchingConsumer
from worker.fetches import Fetch

EVENTS, TICKS, SETTINGS = "events", "ticks", "settings"


def consumer() -> BatchingConsumer:
    """The consumer's acknowledgement bookkeeping alone (no app, no broker)."""
    c = BatchingConsumer.__new__(BatchingConsumer)
    c.hand_over([EVENTS, TICKS], sink=None)
    c._stopped = asyncio.Event()
    c._crashed = asyncio.Event()
    c._acked = {}                # Faust's per-message acks (other topics)
    c.log = logging.getLogger("test")
    return c


def rec(topic: str, partition: int, offset: int):
    return SimpleNamespace(topic=topic, partition=partition, offset=offset)


def test_fetch_ends_are_one_past_the_last_record_of_each_partition():
    f = Fetch.of(3, [rec(EVENTS, 0, 7), rec(EVENTS, 1, 2), rec(EVENTS, 0, 8)])
    assert f.generation == 3 and len(f) == 3
    assert f.ends == {(EVENTS, 0): 9, (EVENTS, 1): 3}


def test_nothing_is_committable_for_a_handed_over_fetch_until_it_is_reported_done():
    c = consumer()
    tp = TP(EVENTS, 0)
    c._pending_fetches = 1                           # handed over, batch running
    assert c._new_offset(tp) is None
    c.fetches_done([Fetch.of(0, [rec(EVENTS, 0, 41)])], {tp: 42})
    assert c._new_offset(tp) == 42 and c._pending_fetches == 0
    assert tp in set(c._filter_tps_with_pending_acks())


def test_a_later_batch_never_moves_the_commit_offset_back():
    c = consumer()
    tp = TP(TICKS, 1)
    c._pending_fetches = 2
    c.fetches_done([object()], {tp: 10})
    c.fetches_done([object()], {tp: 7})
    assert c._new_offset(tp) == 10


def test_topics_outside_the_batch_keep_faust_per_message_acks(monkeypatch):
    c = consumer()
    monkeypatch.setattr(FaustAIOKafkaConsumer, "_new_offset", lambda self, tp: "faust")
    c.fetches_done([], {TP(EVENTS, 0): 5})
    assert c._new_offset(TP(SETTINGS, 0)) == "faust"


def test_wait_empty_returns_only_after_every_handed_over_fetch_is_done(monkeypatch):
    """A rebalance must not commit and give partitions away while a batch is running."""
    faust_waited: list[int] = []

    async def faust_wait_empty(self) -> None:
        faust_waited.append(self._pending_fetches)

    monkeypatch.setattr(FaustAIOKafkaConsumer, "wait_empty", faust_wait_empty)

    async def scenario() -> list[str]:
        c = consumer()
        c._pending_fetches = 2
        order: list[str] = []

        async def batch_loop() -> None:
            for i in range(2):
                await asyncio.sleep(0.05)
                order.append(f"batch {i} durable")
                c.fetches_done([object()], {TP(EVENTS, 0): i + 1})

        loop_task = asyncio.create_task(batch_loop())
        await c.wait_empty()
        order.append("wait_empty returned")
        await loop_task
        return order

    order = asyncio.run(scenario())
    assert order == ["batch 0 durable", "batch 1 durable", "wait_empty returned"]
    assert faust_waited == [0]


def test_wait_empty_with_nothing_handed_over_goes_straight_to_faust(monkeypatch):
    called: list[bool] = []

    async def faust_wait_empty(self) -> None:
        called.append(True)

    monkeypatch.setattr(FaustAIOKafkaConsumer, "wait_empty", faust_wait_empty)
    c = consumer()
    asyncio.run(asyncio.wait_for(c.wait_empty(), timeout=1))
    assert called == [True]


def test_assignment_drops_commit_offsets_of_partitions_no_longer_held(monkeypatch):
    async def faust_assigned(self, assigned, generation_id=0) -> None:
        pass

    monkeypatch.setattr(FaustAIOKafkaConsumer, "on_partitions_assigned", faust_assigned)
    c = consumer()
    kept, gone = TP(EVENTS, 0), TP(EVENTS, 1)
    c.fetches_done([], {kept: 5, gone: 9})
    asyncio.run(c.on_partitions_assigned({kept}, 2))
    assert c._done_offsets == {kept: 5}


def test_a_hand_over_cancelled_while_the_queue_is_full_is_not_counted():
    """On shutdown Faust cancels the fetch loop, possibly while it waits for room in the
    batch loop's queue: that fetch was never handed over and must not hold up
    ``wait_empty`` (it did: a SIGTERM hang, found by the crash test)."""
    async def scenario() -> tuple[int, int]:
        c = consumer()
        queue: asyncio.Queue = asyncio.Queue(maxsize=1)
        c.batch_sink = queue.put
        await c._hand_over(Fetch.of(0, [rec(EVENTS, 0, 1)]))       # room: handed over
        blocked = asyncio.create_task(c._hand_over(Fetch.of(0, [rec(EVENTS, 0, 2)])))
        await asyncio.sleep(0.01)
        blocked.cancel()
        await asyncio.gather(blocked, return_exceptions=True)
        return c._pending_fetches, queue.qsize()

    assert asyncio.run(scenario()) == (1, 1)
