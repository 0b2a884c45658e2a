"""Abuse of the LIVE worker (R10, R19, R20, R25): 1,000 seeded-random malformed records
interleaved with valid traffic, a far-future ts next to an open session, and one key
with 20,000 events. The worker stays up; every bad record is one dead letter; the valid
traffic's outputs are replay's (per input partition); the far-future record does not
move the partition's clock (the probe session stays open); the hot key's state, as
written to the changelog after every batch, stays within the R25 bounds."""
from __future__ import annotations

import asyncio
import random

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import synthetic
from tests.chaos.chaos import bad_event_items, read_inputs, read_outputs
from tests.chaos.oracle import compare, replay_per_partition, table
from tests.kafka_harness import MIN, create_topics, now_ms, produce_lines
from worker.codec import REASONS
from worker.domain.ids import DIGEST_SIZE
from worker.domain.state import from_wire

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

EV = "conversation-events"
N_BAD = 1_000
HOT_EVENTS = 20_000
LIMIT_EVENT_IDS, LIMIT_VARIABLES, LIMIT_AUTH = 256, 64, 16


def _random_bad(rnd: random.Random, i: int) -> dict:
    """Random garbage: bytes, JSON non-objects, objects with wrong field types."""
    kind = i % 4
    key = f"fz:{i}"
    if kind == 0:
        raw = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 200)))
        return {"topic": EV, "key": key, "value_text": raw.decode("latin-1")
                + f"\x00{i}"}
    if kind == 1:
        return {"topic": EV, "key": key,
                "value": rnd.choice([[i], i, f"s{i}", [None, i], -i - 0.5, True])}
    if kind == 2:
        obj = {"event_id": f"f{i}", "app_id": "fz", "user_id": str(i), "ts": 1_700_000_000_000,
               "type": "user_message", "channel": "web"}
        field = rnd.choice(list(obj))
        obj[field] = rnd.choice([None, 0, -1, "", [], {}, 1.5, True, "x" * 300])
        if obj[field] is None:
            del obj[field]
        if field == "type" and obj.get("type") == "":
            obj["type"] = "nope"
        return {"topic": EV, "key": key, "value": obj}
    obj = {"event_id": f"f{i}", "app_id": "fz", "user_id": str(i), "ts": 1_700_000_000_000,
           "type": "context", "channel": "web",
           "variables": [{"name": f"v{j}", "value": j} for j in range(rnd.randrange(0, 50))]
           + [rnd.choice([{"name": ""}, {"name": "v", "ttl_s": -1}, "v", {"delete": 1}])]}
    return {"topic": EV, "key": key, "value": obj}


def _hot_key(start: int) -> list[dict]:
    items = []
    for i in range(HOT_EVENTS):
        v = {"event_id": f"h{i}", "app_id": "hot", "user_id": "one", "ts": start + i * 1_000,
             "type": "user_message", "channel": "web"}
        k = i % 5
        if k == 1:
            v["type"] = "agent_message"
        elif k == 2:
            v.update(type="auth", auth_profile=f"p{i}")
        elif k == 3:
            v.update(type="context", tags=[f"t{i}"], sentiment={f"s{i % 100}": 0.5},
                     variables=[{"name": f"v{i}", "value": i},
                                {"name": f"w{i}", "value": "x", "ttl_s": 86_400}])
        items.append({"topic": EV, "key": "hot:one", "value": v})
    return items


async def _changelog_bounds(env: dict, key: bytes) -> tuple[int, dict]:
    """Every changelog record of ``key``: (records, max sizes of its state parts)."""
    topic = f"{env['WORKER_APP_ID']}-sessions-changelog"
    consumer = AIOKafkaConsumer(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
                                group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        worst = {"seen": 0, "vars": 0, "auth": 0}
        n = 0
        while True:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps)):
                break
            for tp, recs in (await consumer.getmany(timeout_ms=500)).items():
                for r in recs:
                    if r.key == key and r.value is not None:
                        st = from_wire(orjson.loads(r.value)[1])
                        n += 1
                        worst["seen"] = max(worst["seen"], len(st.seen))
                        worst["vars"] = max(worst["vars"], len(st.vars or ()))
                        worst["auth"] = max(worst["auth"], len(st.auth or ()))
        return n, worst
    finally:
        await consumer.stop()


def test_malformed_records_far_future_and_a_hot_key(env, workers):
    rnd = random.Random(2026)
    asyncio.run(create_topics(env))
    now = now_ms()
    settings = synthetic.settings_records()
    valid = [{"topic": EV, "key": f"{e['app_id']}:{e['user_id']}", "value": e}
             for e in synthetic.events(4_000, users=400, seed=5)]
    bad = bad_event_items(rnd, N_BAD // 2, now - 60 * MIN) + [
        _random_bad(rnd, i) for i in range(N_BAD - N_BAD // 2)]
    # the probe: a session opened a minute ago (deadline in ~14 min), then a record with
    # a ts in 2100 on the same key (same partition) — rejected, it must not move the clock
    probe = [
        {"topic": EV, "key": "ff:probe", "value": {
            "event_id": "p1", "app_id": "ff", "user_id": "probe", "ts": now - MIN,
            "type": "user_message", "channel": "web"}},
        {"topic": EV, "key": "ff:probe", "value": {
            "event_id": "p2", "app_id": "ff", "user_id": "probe", "ts": 4_102_444_800_000,
            "type": "user_message", "channel": "web"}},
        {"topic": EV, "key": "ff:probe", "value": {
            "event_id": "p3", "app_id": "ff", "user_id": "probe", "ts": now - MIN + 1,
            "type": "agent_message", "channel": "web"}},
    ]
    traffic = valid + _hot_key(now - 10 * 60 * MIN)
    rnd.shuffle(bad)
    mixed, j = [], 0
    step = len(traffic) // len(bad)
    for i, item in enumerate(traffic):
        mixed.append(item)
        if i % step == step - 1 and j < len(bad):
            mixed.append(bad[j])
            j += 1
    mixed += bad[j:] + probe
    n_bad = len(bad) + 1                                  # + the far-future probe record
    asyncio.run(produce_lines(env, [orjson.dumps(x) for x in settings + mixed]))

    worker = workers(env)
    worker.wait_ready()
    s, evs = asyncio.run(read_inputs(env))
    expected = replay_per_partition(s, evs, until=now_ms() - 2_000)
    outputs = asyncio.run(read_outputs(env, want=len(expected), quiet_s=3, timeout_s=150))
    assert worker.proc.poll() is None, worker.log()[-3000:]

    report = compare(outputs, expected, env)
    t = report["totals"]
    print(table(report))
    assert (t["lost"], t["duplicated"], t["mismatched"], t["unexpected"], t["order_errors"]) \
        == (0, 0, 0, 0, 0), f"{table(report)}\n{report.get('examples')}"

    dead = [o for o in outputs if o.topic == "conversation-events-dlq"]
    assert len(dead) == n_bad
    assert {d.value["reason"] for d in dead} <= set(REASONS)
    assert any(d.key == "ff:probe" and d.value["reason"] == "bad_field" for d in dead)

    probe_out = [(o.topic, o.value) for o in outputs if o.key == "ff:probe"
                 and o.topic != "conversation-events-dlq"]
    assert [t for t, _ in probe_out] == ["session-opened"], probe_out    # still open

    hot = [o for o in outputs if o.key == "hot:one"]
    assert any(o.topic == "session-opened" for o in hot)
    records, worst = asyncio.run(_changelog_bounds(env, b"hot:one"))
    print(f"hot key: {records} changelog records, max sizes {worst}")
    assert records > 0
    assert worst["seen"] <= LIMIT_EVENT_IDS * DIGEST_SIZE
    assert worst["vars"] <= LIMIT_VARIABLES and worst["auth"] <= LIMIT_AUTH
    assert worker.stop() == 0
