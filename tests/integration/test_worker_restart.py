"""Restarts: state and clocks come back from the changelog; SIGTERM loses and repeats
nothing; SIGKILL loses nothing (at-least-once)."""
from __future__ import annotations

import re
import signal
import time

import pytest

from tests.kafka_harness import (MIN, SEC, assert_same_outputs, consume_outputs,
                                 conversation_items, dedupe, log_lines, now_ms,
                                 produce_lines, replay_expected, run, settings_item)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

USERS = 300


def _restored_keys(log: str) -> int:
    return sum(int(n) for n in re.findall(r"restored (\d+) keys", log))


def _bulk_restored(log: str) -> int:
    """Changelog records the restarted worker applied with its bulk restore path."""
    return max((int(n) for n in re.findall(r"(\d+) changelog records applied in bulk", log)),
               default=0)


def _run_with_restart(env, workers, sig: int, ready_timeout_s: float = 60.0):
    settings = [settings_item("rs", {"inactivity_minutes": 5})]
    # deadlines ~28 s from now (a restart takes ~15 s here): the sessions stay open
    # across the restart and then close by the wall clock of the second worker
    base = now_ms() - 5 * MIN + 28 * SEC
    events = conversation_items("rs", USERS, base, 6_000)
    lines = log_lines(settings + events)
    chunks = [lines[:1 + 2_000], lines[1 + 2_000:1 + 4_000], lines[1 + 4_000:]]

    first = workers(env, "first")
    first.wait_ready()
    run(produce_lines(env, chunks[0]))
    time.sleep(0.3)                          # the worker is busy with chunk 0
    first.proc.send_signal(sig)
    run(produce_lines(env, chunks[1]))       # arrives while it is stopping
    code = first.proc.wait(60)
    run(produce_lines(env, chunks[2]))       # arrives while no worker runs

    second = workers(env, "second")
    second.wait_ready(ready_timeout_s)
    deadline = base + 5 * MIN + len(events)
    expected = replay_expected(lines, until=deadline)
    assert sum(t == "session-closed" for t, _, _ in expected) == USERS
    outputs = run(consume_outputs(env, quiet_s=3, timeout_s=90, until=lambda out: sum(
        o.topic == "session-closed" for o in out) >= USERS))
    return code, first, second, outputs, expected


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_sigterm_restart_restores_and_closes_once(env, workers, store):
    """SIGTERM while events stream in: the worker finishes its batch, flushes, commits
    and leaves; the next worker restores the open sessions and clocks (from the
    changelog with the memory store, from its local RocksDB files plus the changelog
    tail with RocksDB), closes every session exactly once, and nothing is published
    twice."""
    env["STORE"] = store
    code, first, second, outputs, expected = _run_with_restart(env, workers, signal.SIGTERM)
    assert code == 0, first.log()[-3000:]
    assert _restored_keys(second.log()) > 0, "the second worker restored nothing"
    if store == "memory://":
        assert _bulk_restored(second.log()) > 0, "the changelog was not restored in bulk"
    assert_same_outputs(outputs, expected, env)      # exactly: no duplicate, no loss
    assert second.stop() == 0


@pytest.mark.parametrize("membership", ["dynamic", "static"])
def test_sigkill_restart_loses_nothing_at_least_once(env, workers, membership):
    """SIGKILL while events stream in: what the killed worker had not committed is
    processed again. Outputs may repeat (at-least-once) but none is lost or changed:
    without repeats they are exactly what replay computes. The state comes back from
    the changelog through the bulk restore path.

    Dynamic membership: the killed member holds its partitions until its session times
    out (6 s here). Static membership (WORKER_INSTANCE_ID, KIP-345): the restarted
    worker with the same id takes them back at once, long before a 60 s session
    timeout would have released them."""
    if membership == "dynamic":
        env["FAUST_BROKER_SESSION_TIMEOUT"] = "6"
        ready_timeout_s = 60.0
    else:
        env["FAUST_BROKER_SESSION_TIMEOUT"] = "60"
        env["WORKER_INSTANCE_ID"] = "restart-test-0"
        ready_timeout_s = 45.0                  # < the session timeout
    code, _, second, outputs, expected = _run_with_restart(env, workers, signal.SIGKILL,
                                                           ready_timeout_s)
    assert code == -signal.SIGKILL
    assert _bulk_restored(second.log()) > 0, "the changelog was not restored in bulk"
    repeats = len(outputs) - len(dedupe(outputs))
    print(f"outputs repeated after SIGKILL: {repeats}")
    assert_same_outputs(dedupe(outputs), expected, env)
    assert second.stop() == 0
