"""Bad input never stops the worker: every rejected record is a dead letter (R19, R20)."""
from __future__ import annotations

import base64

import pytest

from tests.kafka_harness import (HOUR, assert_same_outputs, consume_outputs, create_topics,
                                 event_item, log_lines, now_ms, produce, replay_records, run,
                                 settings_item, topic_name)
from worker.replay import parse_line

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def test_every_dead_letter_reason_goes_to_dlq_R20(env, workers):
    """One record for each R20 reason (and two bad settings, R19), interleaved with valid
    events: each goes to the DLQ under its original key with its reason, topic,
    partition, offset and original bytes; valid events around them are sessionised as
    replay says, and the worker keeps running."""
    run(create_topics(env))
    ts = now_ms() - HOUR

    def good(n: int, user: str = "u1", **extra) -> dict:
        return {"event_id": f"e{n}", "app_id": "app", "user_id": user, "ts": ts + n,
                "type": "user_message", "channel": "web", **extra}

    ev = "conversation-events"
    bad = [
        ("not_json", {"topic": ev, "key": "app:u1", "value_text": "{not json"}),
        ("not_json", {"topic": ev, "key": "app:u1", "value": None}),            # no value
        ("not_object", {"topic": ev, "key": "app:u1", "value": ["e", 1]}),
        ("missing_field", {"topic": ev, "key": "app:u1",
                           "value": {k: v for k, v in good(3).items() if k != "ts"}}),
        ("bad_field", {"topic": ev, "key": "app:u1", "value": good(4, developer="yes")}),
        ("bad_field", {"topic": ev, "key": "app:u1",                            # future ts
                       "value": {**good(5), "ts": now_ms() + 2 * HOUR}}),
        ("unknown_type", {"topic": ev, "key": "app:u1", "value": good(6, type="shout")}),
        ("key_mismatch", {"topic": ev, "key": "app:u2", "value": good(7)}),
        ("key_mismatch", {"topic": ev, "key": None, "value": good(8)}),
        ("too_large", {"topic": ev, "key": "app:u1", "value": good(9, pad="x" * 70_000)}),
        ("bad_settings", settings_item("app", {"mode": "turbo"})),
        ("bad_settings", {"topic": "session-settings", "key": "app",
                          "value": {"app_id": "other", "inactivity_minutes": 30}}),
    ]
    bad = [(reason, parse_line(line)) for reason, line in zip(
        [r for r, _ in bad], log_lines(item for _, item in bad))]
    # the replay format's JSON cannot carry bytes that are not UTF-8: build this one raw
    bad.insert(1, ("not_json", (ev, b"app:u1", b"\xff\xfe{")))
    records = [parse_line(log_lines([event_item(good(0))])[0])]
    for n, (_, record) in enumerate(bad):
        records.append(record)
        records.append(parse_line(log_lines([event_item(good(100 + n, user=f"v{n}"))])[0]))

    produced = run(produce(env, records))
    worker = workers(env)
    worker.wait_ready()
    expected = replay_records(records, until=now_ms())
    outputs = run(consume_outputs(env, quiet_s=3, timeout_s=60,
                                  until=lambda out: len(out) >= len(expected)))
    assert_same_outputs(outputs, expected, env)

    dlq = {(o.value["topic"], o.value["partition"], o.value["offset"]): o
           for o in outputs if o.topic == "conversation-events-dlq"}
    assert len(dlq) == len(bad)
    rejected = [p for p, record in zip(produced, records) if record in [r for _, r in bad]]
    assert len(rejected) == len(bad)
    for (reason, _), rec in zip(bad, rejected):
        out = dlq[(topic_name(env, rec.topic), rec.partition, rec.offset)]
        assert out.key == (rec.key.decode() if rec.key is not None else None)
        assert out.value["reason"] == reason, out.value
        assert out.value["key_b64"] == _b64(rec.key)
        assert out.value["value_b64"] == _b64(rec.value)
        assert out.value["schema"] == "dead-letter/1" and out.value["detail"]
    assert worker.proc.poll() is None, "the worker stopped on bad input"
    assert worker.stop() == 0
