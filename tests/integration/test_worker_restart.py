"""Restarts: state and clocks come back from the changelog; SIGTERM loses and repeats
nothing; SIGKILL loses nothing (at-least-once), and repeats nothing either with
PROCESSING_GUARANTEE=exactly_once (read_committed)."""
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


def _run_with_restart(env, workers, sig: int, ready_timeout_s: float = 60.0,
                      isolation_level: str = "read_uncommitted"):
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
    signalled = time.monotonic()
    first.proc.send_signal(sig)
    run(produce_lines(env, chunks[1]))       # arrives while it is stopping
    code = first.proc.wait(60)
    first.exit_after_s = time.monotonic() - signalled
    run(produce_lines(env, chunks[2]))       # arrives while no worker runs

    second = workers(env, "second")
    second.wait_ready(ready_timeout_s)
    deadline = base + 5 * MIN + len(events)
    expected = replay_expected(lines, until=deadline)
    assert sum(t == "session-closed" for t, _, _ in expected) == USERS
    outputs = run(consume_outputs(env, quiet_s=3, timeout_s=90, until=lambda out: sum(
        o.topic == "session-closed" for o in out) >= USERS, isolation_level=isolation_level))
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


def test_stop_stuck_after_the_flush_ends_at_the_shutdown_deadline_and_loses_nothing(
        env, workers):
    """A graceful stop that hangs after outputs and state were flushed (as aiokafka's
    group leave did once in CI: its coordinator retried forever) is ended by
    SHUTDOWN_TIMEOUT_S with exit 0 and a warning; the final offset commit is what it
    skips, so the next worker reads some records again: nothing is lost or changed,
    repeats are identical (at-least-once)."""
    env["SHUTDOWN_TIMEOUT_S"] = "5"
    env["FAULT_STALL_SHUTDOWN_S"] = "600"
    code, first, second, outputs, expected = _run_with_restart(env, workers, signal.SIGTERM)
    assert code == 0, first.log()[-3000:]
    assert 5 <= first.exit_after_s < 30, first.exit_after_s
    log = first.log()
    assert "FAULT_STALL_SHUTDOWN_S: stalling" in log
    assert "shutdown deadline: the stop did not finish in 5 s; outputs and state were " \
           "flushed" in log
    repeats = len(outputs) - len(dedupe(outputs))
    print(f"exit {first.exit_after_s:.1f} s after SIGTERM; outputs repeated: {repeats}")
    assert_same_outputs(dedupe(outputs), expected, env)
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


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_sigkill_restart_repeats_nothing_exactly_once(env, workers, store):
    """PROCESSING_GUARANTEE=exactly_once: each batch's outputs, changelog records and
    input offsets are one Kafka transaction. SIGKILL mid-stream leaves at most one
    transaction open; the restarted worker (same WORKER_INSTANCE_ID, hence the same
    transactional id) aborts it, restores the state of the committed transactions only
    (the changelog read read_committed, RocksDB's files never ahead of Kafka) and
    processes from the committed offsets. A read_committed consumer then sees exactly
    what replay computes: nothing lost, nothing repeated."""
    env["STORE"] = store
    env["PROCESSING_GUARANTEE"] = "exactly_once"
    env["FAUST_BROKER_SESSION_TIMEOUT"] = "60"
    env["WORKER_INSTANCE_ID"] = "eos-test-0"
    code, _, second, outputs, expected = _run_with_restart(
        env, workers, signal.SIGKILL, 45.0, isolation_level="read_committed")
    assert code == -signal.SIGKILL
    if store == "memory://":
        assert _bulk_restored(second.log()) > 0, "the changelog was not restored in bulk"
    uncommitted = run(consume_outputs(env, quiet_s=1, timeout_s=30))
    print(f"records of aborted transactions (visible read_uncommitted only): "
          f"{len(uncommitted) - len(outputs)}")
    assert_same_outputs(outputs, expected, env)      # exactly: no duplicate, no loss
    assert second.stop() == 0


def test_kill_inside_a_transaction_hides_its_records_and_repeats_nothing_exactly_once(
        env, workers):
    """The worker kills itself (FAULT_KILL_BEFORE_COMMIT=2) once its second
    transaction's outputs and changelog records are in the log, before the commit. A
    read_uncommitted reader sees those records; a read_committed one never does. The
    restarted worker (same transactional id) aborts that transaction, restores only
    committed state and processes the batch again: read_committed, the outputs are
    exactly what replay computes."""
    env.update(PROCESSING_GUARANTEE="exactly_once", FAUST_BROKER_SESSION_TIMEOUT="60",
               WORKER_INSTANCE_ID="eos-fault-0")
    settings = [settings_item("rs", {"inactivity_minutes": 5})]
    base = now_ms() - 5 * MIN + 28 * SEC
    events = conversation_items("rs", USERS, base, 6_000)
    lines = log_lines(settings + events)
    first = workers(dict(env, FAULT_KILL_BEFORE_COMMIT="2"), "first")
    first.wait_ready()
    for chunk in (lines[:1 + 1_000], lines[1 + 1_000:1 + 3_000], lines[1 + 3_000:]):
        run(produce_lines(env, chunk))
        time.sleep(1.0)                      # separate fetches: separate transactions
    assert first.proc.wait(60) == -signal.SIGKILL, first.log()[-3000:]
    assert "killing this worker before the commit of transaction 2" in first.log()

    second = workers(env, "second")
    second.wait_ready(45.0)
    expected = replay_expected(lines, until=base + 5 * MIN + len(events))
    outputs = run(consume_outputs(env, quiet_s=3, timeout_s=90, until=lambda out: sum(
        o.topic == "session-closed" for o in out) >= USERS, isolation_level="read_committed"))
    uncommitted = run(consume_outputs(env, quiet_s=1, timeout_s=30))
    aborted = len(uncommitted) - len(outputs)
    print(f"output records of the aborted transaction (read_uncommitted only): {aborted}")
    assert aborted > 0, "the killed transaction left no records in the log"
    assert_same_outputs(outputs, expected, env)      # exactly: no duplicate, no loss
    assert second.stop() == 0
