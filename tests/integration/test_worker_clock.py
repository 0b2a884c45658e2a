"""The wall-clock half of the clock (R10): an idle, caught-up partition closes on time."""
from __future__ import annotations

import pytest

from tests.kafka_harness import (MIN, SEC, assert_same_outputs, consume_outputs, event_item,
                                 log_lines, now_ms, produce_lines, replay_expected, run,
                                 settings_item)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

LATENESS = 2 * SEC


def test_idle_caught_up_partition_closes_on_time_R6_R10(env, workers):
    """Sessions whose deadline is ~10 s ahead, and then no more events at all: the
    worker closes each one at its deadline (closed_at = deadline, R6) and publishes the
    close within allowed lateness + 2 s of the deadline in wall time."""
    worker = workers(env)
    worker.wait_ready()
    settings = [settings_item("fast", {"inactivity_minutes": 5})]
    run(produce_lines(env, log_lines(settings)))
    base = now_ms() - 5 * MIN + 10 * SEC
    events = [event_item({"event_id": f"e{i}", "app_id": "fast", "user_id": f"u{i}",
                          "ts": base + i * 300, "type": "user_message", "channel": "web"})
              for i in range(12)]
    lines = log_lines(settings + events)
    run(produce_lines(env, lines[1:]))
    expected = replay_expected(lines, until=base + 5 * MIN + 12 * 300)
    closes = [v for t, _, v in expected if t == "session-closed"]
    assert len(closes) == 12

    outputs = run(consume_outputs(env, quiet_s=2, timeout_s=60, until=lambda out: sum(
        o.topic == "session-closed" for o in out) >= 12))
    assert_same_outputs(outputs, expected, env)
    delays = sorted(o.received - o.value["closed_at"] for o in outputs
                    if o.topic == "session-closed")
    print(f"close delay after deadline (ms): min {delays[0]} max {delays[-1]}")
    assert delays[0] >= LATENESS - 50, "closed before deadline + allowed lateness"
    assert delays[-1] <= LATENESS + 2 * SEC, "closed too late"
    assert worker.stop() == 0
