"""A backlog produced before the worker starts is sessionised by event time (R10)."""
from __future__ import annotations

import pytest

from tests.kafka_harness import (HOUR, assert_same_outputs, consume_outputs, create_topics,
                                 log_lines, mixed_log, now_ms, produce_lines,
                                 replay_expected, run)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_backlog_is_sessionised_by_event_time_R10(env, workers):
    """Hours of past traffic, all waiting in Kafka before the worker starts: sessions
    open and close by the events' own time. Had the lagging worker used its wall clock
    (hours ahead of the events), every session would have been closed right after its
    first event and the next event would have opened another one."""
    run(create_topics(env))
    start = now_ms() - 6 * HOUR
    lines = log_lines(mixed_log(seed=10, start_ts=start, n_events=12_000, n_users=150,
                                step_ms=3_000, bad_every=0, dup_every=0))
    run(produce_lines(env, lines))
    expected = replay_expected(lines, until=now_ms())

    worker = workers(env)
    worker.wait_ready()
    outputs = run(consume_outputs(env, quiet_s=3, timeout_s=120,
                                  until=lambda out: len(out) >= len(expected)))
    assert_same_outputs(outputs, expected, env)
    assert worker.stop() == 0
