"""The live worker publishes what replay computes from the same log (R22)."""
from __future__ import annotations

import time

import pytest

from tests.kafka_harness import (HOUR, MIN, SEC, assert_same_outputs, consume_outputs,
                                 create_topics, event_item, log_lines, mixed_log, now_ms,
                                 produce_lines, replay_expected, run)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_mixed_log_matches_replay_R22(env, workers):
    """Every event type, four modes with their settings, duplicates and rejected records:
    the outputs of the worker are, per topic and key and in order, those of replay."""
    run(create_topics(env))
    # ends ~1 h ago: every deadline is long past, none falls within the test run
    lines = log_lines(mixed_log(seed=22, start_ts=now_ms() - 5 * HOUR, n_events=8_000,
                                n_users=60, step_ms=3_500))
    run(produce_lines(env, lines))
    expected = replay_expected(lines, until=now_ms())
    worker = workers(env)
    worker.wait_ready()
    outputs = run(consume_outputs(env, quiet_s=3, timeout_s=120,
                                  until=lambda out: len(out) >= len(expected)))
    assert_same_outputs(outputs, expected, env)
    assert worker.stop() == 0


def test_rebalance_moves_partitions_with_their_sessions(env, workers):
    """Events stream in while a second worker joins (partitions move to it with their
    state) and the first one leaves (they move back): the outputs are exactly replay's —
    no session lost, reopened or closed twice."""
    users, per_step = 400, 400
    base = now_ms() - 5 * MIN + 30 * SEC     # the two rebalances take ~20 s
    settings = [{"topic": "session-settings", "key": "rb",
                 "value": {"app_id": "rb", "inactivity_minutes": 5}}]
    events = [event_item({"event_id": f"e{i}", "app_id": "rb", "user_id": f"u{i % users}",
                          "ts": base + i, "channel": "web",
                          "type": "user_message" if i % 4 else "agent_message"})
              for i in range(5 * per_step)]
    lines = log_lines(settings + events)
    steps = [lines[:1 + per_step]] + [lines[1 + k * per_step:1 + (k + 1) * per_step]
                                      for k in range(1, 5)]
    first = workers(env, "first")
    first.wait_ready()
    run(produce_lines(env, steps[0]))
    second = workers(env, "second")                  # joins: the group rebalances
    run(produce_lines(env, steps[1]))
    second.wait_ready()
    first.wait_ready(count=2)
    run(produce_lines(env, steps[2]))
    time.sleep(1)
    first.proc.send_signal(15)                       # leaves: everything to the second
    run(produce_lines(env, steps[3]))
    assert first.proc.wait(60) == 0
    second.wait_ready(count=2)
    run(produce_lines(env, steps[4]))

    expected = replay_expected(lines, until=base + 5 * MIN + len(events))
    assert sum(t == "session-closed" for t, _, _ in expected) == users
    outputs = run(consume_outputs(env, quiet_s=3, timeout_s=90, until=lambda out: sum(
        o.topic == "session-closed" for o in out) >= users))
    assert "restored" in second.log() and "dropped partitions" in first.log()
    assert_same_outputs(outputs, expected, env)
    assert second.stop() == 0
