"""The worker's garbage-collector policy (worker.gc_policy): freeze on every tick, a
full collection (frozen objects included) when one is due, nothing when disabled."""
from __future__ import annotations

import gc
import weakref

from worker.gc_policy import GcPolicy


class FakeGc:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def freeze(self) -> None:
        self.calls.append("freeze")

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")

    def collect(self) -> int:
        self.calls.append("collect")
        return 7

    def get_freeze_count(self) -> int:
        return 0


def test_each_tick_freezes_and_a_full_collection_comes_when_due():
    fake, seen = FakeGc(), []
    policy = GcPolicy(10, 3600, gc=fake, on_full=lambda s, n: seen.append(n))
    for now in (0, 10, 20):
        policy.tick(now)
    assert fake.calls == ["freeze"] * 3 and seen == []
    policy.tick(3600)
    assert fake.calls[3:] == ["unfreeze", "collect", "freeze"]
    assert seen == [7] and policy.full_collections == 1
    policy.tick(3610)                  # the next full pass is an interval later
    assert fake.calls[6:] == ["freeze"]


def test_full_interval_zero_never_unfreezes():
    fake = FakeGc()
    policy = GcPolicy(10, 0, gc=fake)
    for now in range(0, 100_000, 10):
        policy.tick(now)
    assert set(fake.calls) == {"freeze"}


def test_freeze_interval_zero_leaves_the_collector_alone():
    fake = FakeGc()
    policy = GcPolicy(0, 3600, gc=fake)
    policy.freeze()
    policy.tick(0)
    policy.tick(10_000)
    assert not policy.enabled and fake.calls == []


def test_frozen_objects_are_kept_and_cycles_are_reclaimed_by_a_full_pass():
    """With the real collector: a cycle that became garbage after it was frozen
    survives ordinary collections and is reclaimed by the full pass."""
    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    policy = GcPolicy(10, 3600)
    try:
        policy.freeze()
        del a, b                             # an unreachable cycle, now frozen
        gc.collect()
        assert alive() is not None           # ordinary collections do not scan it
        assert policy.full() >= 2            # the full pass reclaims both nodes
        assert alive() is None
    finally:
        gc.unfreeze()


def test_paused_disables_collection_inside_and_freezes_after():
    class PausingGc(FakeGc):
        enabled = True

        def isenabled(self) -> bool:
            return self.enabled

        def disable(self) -> None:
            self.calls.append("disable")
            self.enabled = False

        def enable(self) -> None:
            self.calls.append("enable")
            self.enabled = True

    fake = PausingGc()
    policy = GcPolicy(1, 0, gc=fake)
    with policy.paused():
        assert fake.enabled is False
    assert fake.calls == ["disable", "enable", "freeze"] and fake.enabled
    off = PausingGc()
    with GcPolicy(0, 0, gc=off).paused():   # policy disabled: the collector is left alone
        pass
    assert off.calls == []
