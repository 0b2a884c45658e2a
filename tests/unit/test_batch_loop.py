"""The batch loop (``Worker.batch_loop``) with a scripted processor and consumer (no
broker): a batch's state rides with the next batch only while fetches are queued, and
every batch is reported done once its state is delivered, also when the loop stops."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from worker.app import Worker
from worker.processor import Deferred


class Fetch(list):
    """A fetch of one record (the loop only takes ``len``)."""

    def __init__(self, name: str) -> None:
        super().__init__([name])
        self.name = name


class ScriptedProcessor:
    """Defers whenever the loop allows it; logs handles, flushes and what rode along."""

    def __init__(self, log: list, gate: asyncio.Event | None = None) -> None:
        self.log = log
        self.gate = gate
        self.last_delivery_s = 0.0

    async def handle(self, batch, carried=None, may_defer=None):
        if self.gate is not None:
            await self.gate.wait()
        names = "+".join(f.name for f in batch)
        self.log.append(f"handle {names}" + (f" with state of {carried.outbox}" if carried else ""))
        offsets = {names: True}
        if may_defer is not None and may_defer():
            return Deferred(names, [], offsets)
        return offsets

    async def flush(self, deferred: Deferred) -> dict:
        self.log.append(f"flush state of {deferred.outbox}")
        return deferred.offsets


def fake_worker(log: list, gate: asyncio.Event | None = None):
    def fetches_done(fetches, offsets) -> None:
        log.append(f"done {'+'.join(f.name for f in fetches)} {sorted(offsets)}")

    return SimpleNamespace(
        batches=asyncio.Queue(), ws=SimpleNamespace(batch_max=1),
        processor=ScriptedProcessor(log, gate),
        app=SimpleNamespace(consumer=SimpleNamespace(fetches_done=fetches_done)))


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_queued_fetches_carry_the_previous_state_and_an_empty_queue_flushes_none_behind():
    async def scenario() -> list:
        log: list = []
        w = fake_worker(log)
        for name in ("a", "b", "c"):
            w.batches.put_nowait(Fetch(name))
        loop = asyncio.create_task(Worker.batch_loop(w))
        await _settle()
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        return log

    assert asyncio.run(scenario()) == [
        "handle a",                      # b waits: a's state deferred
        "handle b with state of a", "done a ['a']",
        "handle c with state of b", "done b ['b']",
        "done c ['c']",                  # queue empty: c's state went out at once
    ]


def test_a_state_deferred_when_the_queue_empties_meanwhile_is_flushed_before_waiting():
    async def scenario() -> list:
        log: list = []
        w = fake_worker(log)
        w.batches.put_nowait(Fetch("a"))
        w.batches.put_nowait(Fetch("b"))
        w.processor.handle = _defer_always(w.processor, log)
        loop = asyncio.create_task(Worker.batch_loop(w))
        await _settle()
        log.append("idle")
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        return log

    assert asyncio.run(scenario()) == [
        "handle a", "handle b with state of a", "done a ['a']",
        "flush state of b", "done b ['b']",     # nothing queued: not left waiting
        "idle",
    ]


def _defer_always(proc: ScriptedProcessor, log: list):
    async def handle(batch, carried=None, may_defer=None):
        names = "+".join(f.name for f in batch)
        log.append(f"handle {names}" + (f" with state of {carried.outbox}" if carried else ""))
        return Deferred(names, [], {names: True})
    return handle


def test_a_loop_stopped_with_a_state_deferred_delivers_it_before_it_ends():
    """Faust cancels the loop on shutdown: the batch in flight finishes (finish_batch),
    and the state it deferred is flushed and its fetches reported done, so the commit
    before the shutdown (or a rebalance) never waits for a state left behind."""
    async def scenario() -> list:
        log: list = []
        gate = asyncio.Event()
        w = fake_worker(log, gate)
        w.batches.put_nowait(Fetch("a"))
        loop = asyncio.create_task(Worker.batch_loop(w))
        await _settle()                       # a's handle waits at the gate
        w.batches.put_nowait(Fetch("b"))      # so a's state will be deferred
        loop.cancel()
        await _settle()
        gate.set()
        result = await asyncio.gather(loop, return_exceptions=True)
        log.append(type(result[0]).__name__)
        return log

    assert asyncio.run(scenario()) == [
        "handle a", "flush state of a", "done a ['a']", "CancelledError"]
