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


def _recover(table, outbox) -> None:
    """What Faust's recovery does before the registry rebuilds: the changelog records
    (here, those staged in ``outbox``) read into the memory store."""
    for (_, _), records in outbox.staged.items():
        for key, value in records:
            if value is None:
                table.data.pop(key, None)
            else:
                table.data[key] = value


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
    state.settle([], state.take_unsettled())
    assert not table.data            # live writes go to the changelog only
    changelog = {k: v for recs in outbox.staged.values() for k, v in recs}
    raw = changelog[b"app:a"]
    assert orjson.loads(raw)[0] == 1 and orjson.loads(raw)[1] == to_wire(a.states["app:a"])
    assert orjson.loads(changelog[clock_key(2)]) == [2, b.clock()]
    # every change went to the changelog partition of its events partition
    staged = {(t, p): [k for k, _ in recs] for (t, p), recs in outbox.staged.items()}
    assert staged == {(table.changelog_topic.get_topic_name(), 1): [b"app:a", clock_key(1)],
                      (table.changelog_topic.get_topic_name(), 2): [b"app:b", clock_key(2)]}

    _recover(table, outbox)
    registry = PartitionRegistry(CoreConfig(), SettingsBook(), state)
    assert registry.rebuild({2, 3}) == {2, 3}
    assert set(registry.parts[2].states) == {"app:b"}
    assert registry.parts[2].clock() == b.clock()
    assert registry.parts[2].due_of("app:b") == 2_000 + 15 * 60_000     # index rebuilt
    assert not registry.parts[3].states
    assert registry.collect_writes() == {}                  # loading is not a change


def test_the_memory_store_is_emptied_once_the_core_holds_its_partitions(table, publisher):
    """The memory store only stages recovery: what Faust read from the changelog, the
    registry loads, then it holds nothing (a second copy of every key's state, ~0.45 KB
    of RSS per key). Revoked partitions are dropped; the changelog brings them back."""
    state = StateTable(table)
    part = _sessions(ev("user_message", 1_000, key="app:a"))
    outbox = publisher.outbox()
    state.write(outbox, 1, part.take_dirty(), part.clock())
    state.settle([], state.take_unsettled())
    _recover(table, outbox)
    table.data._key_partition.update({b"app:a": 1, clock_key(1): 1})    # as Faust's restore
    registry = PartitionRegistry(CoreConfig(), SettingsBook(), state)
    assert registry.rebuild({1}) == {1} and set(registry.get(1).states) == {"app:a"}
    assert not table.data and not table.data.data and not table.data._key_partition
    assert registry.retain({0}) == {1}
    assert 1 not in registry
    with pytest.raises(RuntimeError):
        registry.get(1)
    _recover(table, outbox)                         # assigned again: read again
    assert registry.rebuild({1}) == {1} and set(registry.get(1).states) == {"app:a"}


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
    state.settle([], state.take_unsettled())
    assert [k for recs in outbox.staged.values() for k, v in recs if v is None] == [b"app:a"]


def test_outputs_are_partitioned_like_kafka_clients_partition_keyed_records(publisher):
    outbox = publisher.outbox()
    keys = [f"app:u{i}" for i in range(200)]
    outbox.publish([("session-opened", k, {"n": i}) for i, k in enumerate(keys)])
    partitioner = DefaultPartitioner()
    for (topic, partition), records in outbox.staged.items():
        assert topic == "o"
        for key, _ in records:
            assert partition == partitioner(key, list(range(8)), list(range(8)))


