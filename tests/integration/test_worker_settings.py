"""Settings on a running worker (R19): valid changes move the deadlines of open
sessions within seconds, invalid ones are dead letters and change nothing."""
from __future__ import annotations

import time

import pytest

from tests.kafka_harness import (MIN, SEC, assert_same_outputs, consume_outputs, event_item,
                                 log_lines, now_ms, produce_lines, replay_expected, run,
                                 settings_item)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

USERS = 20


def _opening(app: str, ts: int) -> list[dict]:
    return [event_item({"event_id": f"{app}-{i}", "app_id": app, "user_id": f"u{i}",
                        "ts": ts + i, "type": "user_message", "channel": "web"})
            for i in range(USERS)]


def _count(outputs, topic, app):
    return sum(o.topic == topic and o.key.startswith(f"{app}:") for o in outputs)


def test_settings_change_moves_open_deadlines_R19(env, workers):
    """App "short": sessions opened 6 min ago under the default 15 min stay open, an
    invalid change (2 min) is rejected with bad_settings, then 5 min makes them overdue
    and they close within seconds at activity + 5 min. App "long": sessions due in ~8 s
    under 15 min get 60 min instead and do not close."""
    worker = workers(env)
    worker.wait_ready()
    t0 = now_ms()
    short = _opening("short", t0 - 6 * MIN)
    long_ = _opening("long", t0 - 15 * MIN + 8 * SEC)
    log = short + long_
    run(produce_lines(env, log_lines(log)))
    out = run(consume_outputs(env, quiet_s=0.5, timeout_s=30,
                              until=lambda o: len(o) >= 2 * USERS))
    assert _count(out, "session-opened", "short") == USERS

    changes = [settings_item("long", {"inactivity_minutes": 60}),
               settings_item("short", {"inactivity_minutes": 2})]          # invalid
    log += changes
    run(produce_lines(env, log_lines(changes)))
    time.sleep(3)
    out = run(consume_outputs(env, quiet_s=0.5, timeout_s=30))
    assert _count(out, "conversation-events-dlq", "short") == 0
    dlq = [o for o in out if o.topic == "conversation-events-dlq"]
    assert [(o.key, o.value["reason"]) for o in dlq] == [("short", "bad_settings")]
    assert _count(out, "session-closed", "short") == 0, "invalid settings were applied"

    valid = [settings_item("short", {"inactivity_minutes": 5})]
    log += valid
    changed_at = now_ms()
    run(produce_lines(env, log_lines(valid)))
    out = run(consume_outputs(env, quiet_s=0.5, timeout_s=30,
                              until=lambda o: _count(o, "session-closed", "short") >= USERS))
    closes = [o for o in out if o.topic == "session-closed"]
    assert all(o.value["closed_at"] == o.value["last_activity_at"] + 5 * MIN for o in closes)
    applied_within = max(o.received for o in closes) - changed_at
    print(f"settings change applied to open sessions within {applied_within} ms")
    assert applied_within < 5 * SEC

    # "long" would have closed ~8 s after t0 under the old 15 min
    time.sleep(max(0.0, (t0 + 8 * SEC + 2 * SEC + 3 * SEC - now_ms()) / 1000))
    out = run(consume_outputs(env, quiet_s=1, timeout_s=30))
    assert _count(out, "session-closed", "long") == 0, "deadline was not moved out"
    # the replay of the same log (settings changes in the order they were published)
    expected = replay_expected(log_lines(log), until=now_ms())
    assert_same_outputs(out, expected, env)
    assert worker.stop() == 0
