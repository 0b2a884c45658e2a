"""The deadline index (R6, R10, R23) against a plain model: whatever the sequence of
due-time changes, deletions and clock moves, popping at a watermark yields exactly the
keys whose due time is at or before it, in (due, key) order, and ``min_due`` is never
above the smallest due time."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.domain.deadlines import BUCKET_MS, DeadlineIndex
from worker.domain.state import KeyState

KEYS = [f"app:u{i}" for i in range(12)]

ops = st.lists(st.one_of(
    st.tuples(st.just("set"), st.sampled_from(KEYS),
              st.none() | st.integers(0, 40).map(lambda k: k * 250 + 1)),
    st.tuples(st.just("delete"), st.sampled_from(KEYS), st.none()),
    st.tuples(st.just("tick"), st.none(), st.integers(0, 3_000)),
), max_size=120)


def run_against_model(steps) -> None:
    states: dict[str, KeyState] = {}
    index = DeadlineIndex(states)
    model: dict[str, int] = {}
    watermark = 0
    for op, key, arg in steps:
        if op == "set":
            st_ = states.get(key)
            if st_ is None:
                st_ = states[key] = KeyState("app")
            index.set(st_, key, arg)
            if arg:
                model[key] = arg
            else:
                model.pop(key, None)
        elif op == "delete":
            states.pop(key, None)
            model.pop(key, None)
        else:
            watermark += arg                     # the clock never moves back (R10)
            if model:
                assert index.min_due() <= min(model.values())
            popped = []
            while (k := index.pop_due(watermark)) is not None:
                popped.append(k)
            want = sorted((d, k) for k, d in model.items() if d <= watermark)
            assert popped == [k for _, k in want], (watermark, popped, want)
            for _, k in want:
                del model[k]
                assert states[k].due == 0
            assert index.any_due(watermark) is False or index.pop_due(watermark) is None
        for k, d in model.items():
            assert index.get(k) == d


@settings(max_examples=400, deadline=None)
@given(steps=ops)
def test_keys_come_out_in_due_then_key_order_R23(steps):
    run_against_model(steps)


def test_many_moves_earlier_rebuild_the_buckets_and_lose_nothing():
    # every set moves a due time earlier: each adds an entry, past the rebuild threshold
    steps = []
    for round_ in range(120, 0, -1):
        for k in KEYS:
            steps.append(("set", k, round_ * BUCKET_MS + KEYS.index(k)))
    steps.append(("tick", None, 200 * BUCKET_MS))
    run_against_model(steps)


def test_a_key_that_moved_on_is_not_popped_at_its_old_time_R6():
    states: dict[str, KeyState] = {}
    index = DeadlineIndex(states)
    a = states["a"] = KeyState("app")
    index.set(a, "a", 1_500)
    index.set(a, "a", 9_500)                 # activity moved it later: no new entry
    assert index.pop_due(5_000) is None
    assert index.pop_due(9_499) is None
    assert index.pop_due(9_500) == "a" and a.due == 0


def test_a_rebuild_while_the_clock_opens_buckets_loses_nothing_R6():
    """Keys deleted leave their entries behind; re-entering a key that moved on can then
    rebuild the index in the middle of opening the buckets the clock reached."""
    gone = [f"app:gone{i}" for i in range(1_100)]
    kept = [f"app:kept{i}" for i in range(10)]
    steps = [("set", k, 2_001) for k in gone]
    steps += [("set", k, 1_001) for k in kept] + [("set", k, 60_000) for k in kept]
    steps += [("delete", k, None) for k in gone]
    steps += [("tick", None, 2_500), ("tick", None, 60_000)]
    run_against_model(steps)
