"""The Kafka shell's pure parts, without a broker: caught-up test (R10), the state
table's layout and per-partition rebuild, output partitioning."""
from __future__ import annotations

import faust
import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from tests.builders import ev
from worker.clock import PartitionProgress, is_caught_up
from worker.domain import CoreConfig, PartitionSessions, SettingsBook
from worker.domain.state import to_wire
from worker.partitions import PartitionRegistry
from worker.publisher import Publisher
from worker.state_table import StateTable, clock_key


def test_caught_up_means_next_offset_to_process_reached_the_highwater_R10():
    progress = PartitionProgress()
    assert not is_caught_up(progress.next_offset(0), 5)       # unknown: not caught up
    progress.start_at(0, 3)
    assert not is_caught_up(progress.next_offset(0), 5)
    progress.handled(0, 4)
    assert is_caught_up(progress.next_offset(0), 5)
    progress.handled(0, 2)                                     # never moves back
    assert progress.next_offset(0) == 5
    assert not is_caught_up(5, None)                           # no fetch yet: unknown
    progress.reset()
    assert progress.next_offset(0) is None


@pytest.fixture
def table():
    app = faust.App("unit-shell", broker="kafka://localhost:1", store="memory://",
                    autodiscover=False, web_enabled=False)
    return app.Table("sessions", partitions=4, key_type=bytes, value_type=bytes)


@pytest.fixture
def publisher():
    pub = Publisher({"bootstrap_servers": "localhost:1"}, "unit", {
        "session-opened": "o", "session-upgraded": "u", "session-closed": "c",
        "session-notifications": "n", "conversation-events-dlq": "d"})
    pub.partitions = {"o": 8, "u": 8, "c": 8, "n": 8, "d": 8}
    return pub


def _sessions(*events) -> PartitionSessions:
    part = PartitionSessions(CoreConfig(), SettingsBook())
    for e in events:
        part.on_event(e)
    return part


def test_table_values_carry_their_partition_and_rebuild_only_owned_ones(table, publisher):
    state = StateTable(table)
    outbox = publisher.outbox()
    a = _sessions(ev("user_message", 1_000, key="app:a"))
    b = _sessions(ev("user_message", 2_000, key="app:b"))
    state.write(outbox, 1, a.take_dirty(), a.clock())
    state.write(outbox, 2, b.take_dirty(), b.clock())
    assert b"app:a" not in table.data            # the store only takes delivered state
    state.settle([])
    raw = table.data[b"app:a"]
    assert orjson.loads(raw)[0] == 1 and orjson.loads(raw)[1] == to_wire(a.states["app:a"])
    assert orjson.loads(table.data[clock_key(2)]) == [2, b.clock()]
    # every change went to the changelog partition of its events partition
    staged = {(t, p): [k for k, _ in recs] for (t, p), recs in outbox.staged.items()}
    assert staged == {(table.changelog_topic.get_topic_name(), 1): [b"app:a", clock_key(1)],
                      (table.changelog_topic.get_topic_name(), 2): [b"app:b", clock_key(2)]}

    registry = PartitionRegistry(CoreConfig(), SettingsBook(), state)
    assert registry.rebuild({2, 3}) == {2, 3}
    assert set(registry.parts[2].states) == {"app:b"}
    assert registry.parts[2].clock() == b.clock()
    assert registry.parts[2].due_of("app:b") == 2_000 + 15 * 60_000     # index rebuilt
    assert not registry.parts[3].states
    assert registry.collect_writes() == {}                  # loading is not a change


def test_revoked_partitions_are_dropped_and_forgotten_by_the_memory_store(table, publisher):
    state = StateTable(table)
    part = _sessions(ev("user_message", 1_000, key="app:a"))
    state.write(publisher.outbox(), 1, part.take_dirty(), part.clock())
    state.settle([])
    registry = PartitionRegistry(CoreConfig(), SettingsBook(), state)
    registry.rebuild({1})
    assert registry.retain({0}) == {1}
    assert 1 not in registry and b"app:a" not in table.data and clock_key(1) not in table.data
    with pytest.raises(RuntimeError):
        registry.get(1)


def test_deletions_are_tombstones_and_clocks_are_written_only_when_they_moved(table, publisher):
    state = StateTable(table)
    registry = PartitionRegistry(CoreConfig(), SettingsBook(), state)
    registry.rebuild({0})
    part = registry.get(0)
    part.on_event(ev("user_message", 1_000, key="app:a"))
    first = registry.collect_writes()
    assert set(first[0][0]) == {"app:a"} and first[0][1] == part.clock()
    assert registry.collect_writes() == {}                   # nothing moved since
    closed_at = 1_000 + 15 * 60_000
    part.advance_to(closed_at + 60 * 60_000)                 # closed (R6), ids forgotten (R21)
    assert "app:a" not in part.states
    second = registry.collect_writes()
    assert second == {0: ({"app:a": None}, part.clock())}    # a tombstone and the clock
    outbox = publisher.outbox()
    state.write(outbox, 0, *second[0])
    state.settle([])
    assert [k for recs in outbox.staged.values() for k, v in recs if v is None] == [b"app:a"]
    assert b"app:a" not in table.data


def test_outputs_are_partitioned_like_kafka_clients_partition_keyed_records(publisher):
    outbox = publisher.outbox()
    keys = [f"app:u{i}" for i in range(200)]
    outbox.publish([("session-opened", k, {"n": i}) for i, k in enumerate(keys)])
    partitioner = DefaultPartitioner()
    for (topic, partition), records in outbox.staged.items():
        assert topic == "o"
        for key, _ in records:
            assert partition == partitioner(key, list(range(8)), list(range(8)))



def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def test_the_memory_store_keeps_right_sized_values_not_orjson_buffers(table, publisher):
    """R25 (bounded state) in bytes of memory: orjson's output pins a few KiB of RSS
    while it lives (``state_table.compact``), so the store keeps copies. 20,000 keys
    written and settled in batches of 500, as the worker does: about 0.3 KB of RSS per
    stored key with copies, 4.2 KB without; the bound leaves a wide margin either way."""
    import gc
    state = StateTable(table)
    parts = [_sessions(*(ev("user_message", 1_000 + i, key=f"app:u{b:02d}{i:04d}")
                         for i in range(500))) for b in range(40)]
    gc.collect()
    before = _rss()
    for part in parts:
        state.write(publisher.outbox(), 1, part.take_dirty(), None)
        state.settle([])
    gc.collect()
    per_key = (_rss() - before) / 20_000
    assert len(table.data) == 20_000
    assert per_key < 2_000, f"{per_key:.0f} B of RSS per stored key"
