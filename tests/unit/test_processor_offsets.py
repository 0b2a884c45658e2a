"""The batch processor against a recording publisher (no broker): input positions are
stored with the state, and records the table already reflects are skipped after a
restart instead of being applied again."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
import orjson
import pytest

from worker.fetches import Fetch
from worker.partitions import PartitionRegistry
from worker.processor import BatchProcessor, Deferred
from worker.publisher import Publisher
from worker.settings_env import settings_from_env
from worker.state_table import StateTable, clock_key

EVENTS = "conversation-events"


class RecordingPublisher(Publisher):
    """Delivery succeeds at once; what was delivered is kept in order."""

    def __init__(self, names: dict) -> None:
        super().__init__({"bootstrap_servers": "localhost:1"}, "unit", names)
        self.delivered: list[tuple[str, int, bytes | None, bytes | None]] = []
        self.deliveries: list[list[tuple]] = []      # what each acknowledged delivery held

    async def deliver(self, outbox, timeout: float = 0.0) -> list:
        records = [(topic, partition, k, v)
                   for (topic, partition), recs in outbox.staged.items() for k, v in recs]
        self.delivered.extend(records)
        self.deliveries.append(records)
        outbox.staged.clear()
        return []

    async def deliver_atomically(self, outbox, offsets, group_id, timeout=0.0) -> list:
        return await self.deliver(outbox)


class FakeClock:
    """A lagging partition: the wall clock is never used (R10)."""

    def __init__(self) -> None:
        from worker.clock import PartitionProgress
        self.progress = PartitionProgress()

    def clock(self) -> int:
        return 1_000_000

    async def watermark(self, partition: int):
        return None


class NoSettings:
    def drain(self) -> list:
        return []


def record(offset: int, event: dict, partition: int = 0):
    msg = SimpleNamespace(topic=EVENTS, partition=partition, offset=offset, timestamp=0,
                          key=f"{event['app_id']}:{event['user_id']}".encode(),
                          value=orjson.dumps(event))
    return msg


def fetched(records, generation: int = 0) -> list[Fetch]:
    """One batch of one fetch, as the consumer hands it over."""
    return [Fetch.of(generation, records)]


def event(i: int, user: str = "u1") -> dict:
    return {"event_id": f"e{i}", "app_id": "app", "user_id": user, "ts": 1_000 + i,
            "type": "user_message", "channel": "web", "intent": None}


@pytest.fixture
def worker_parts(monkeypatch, tmp_path):
    monkeypatch.setenv("STATE_DIR", str(tmp_path))
    ws = settings_from_env()
    app = faust.App("unit-proc", broker="kafka://localhost:1", store="memory://",
                    autodiscover=False, web_enabled=False)
    table = app.Table("sessions", partitions=2, key_type=bytes, value_type=bytes)
    pub = RecordingPublisher(ws.output_topics)
    pub.partitions = {name: 4 for name in ws.output_topics.values()}
    return ws, table, pub


def make_processor(ws, table, pub) -> tuple[BatchProcessor, PartitionRegistry]:
    from worker.domain import SettingsBook
    state = StateTable(table)
    registry = PartitionRegistry(ws.core, SettingsBook(ws.default_settings), state)
    registry.rebuild({0})
    return BatchProcessor(ws, registry, state, pub, FakeClock(), NoSettings()), registry


def changelog(pub: RecordingPublisher) -> dict[bytes, bytes | None]:
    """The state changelog as compacted: the last value delivered for each key."""
    return {k: v for t, _, k, v in pub.delivered if t.endswith("changelog")}


def recover(table, pub: RecordingPublisher) -> None:
    """What Faust's recovery does before a restarted worker rebuilds its partitions:
    read the changelog into the (memory) store."""
    for key, value in changelog(pub).items():
        if value is None:
            table.data.pop(key, None)
        else:
            table.data[key] = value


def lifecycle(pub: RecordingPublisher) -> list[bytes]:
    return [v for t, _, _, v in pub.delivered if not t.endswith("changelog")]


def test_clock_record_carries_the_next_offset_with_the_state(worker_parts):
    ws, table, pub = worker_parts
    proc, _ = make_processor(ws, table, pub)
    asyncio.run(proc.handle(fetched([record(0, event(0)), record(1, event(1))])))
    stored = orjson.loads(changelog(pub)[clock_key(0)])
    assert stored[0] == 0 and stored[1][2] == 2                # next offset: 2
    # the clock record follows the key records on the same changelog partition
    keys = [k for t, p, k, _ in pub.delivered if t.endswith("changelog")]
    assert keys == [b"app:u1", clock_key(0)]


def test_records_the_restored_table_already_reflects_are_skipped_after_restart(worker_parts):
    """At-least-once redelivery (offsets not yet committed at a crash) is recognised by
    offset, not only by event id (R21): nothing is applied twice."""
    ws, table, pub = worker_parts
    first, _ = make_processor(ws, table, pub)
    asyncio.run(first.handle(fetched([record(0, event(0)), record(1, event(1))])))
    published = len(lifecycle(pub))
    assert published == 1                                        # session-opened

    recover(table, pub)
    second, registry = make_processor(ws, table, pub)            # a restarted worker
    assert registry.next_offset == {0: 2}
    asyncio.run(second.handle(fetched([record(0, event(0)), record(1, event(1)),
                               record(2, event(2))])))
    assert second.counts["replayed_skipped"] == 2
    assert len(lifecycle(pub)) == published                      # nothing re-emitted
    assert registry.get(0).states["app:u1"].user_events == 3     # 0, 1, then 2 once
    assert orjson.loads(changelog(pub)[clock_key(0)])[1][2] == 3


def test_rejected_records_also_move_the_stored_position_R20(worker_parts):
    ws, table, pub = worker_parts
    proc, registry = make_processor(ws, table, pub)
    bad = record(0, event(0))
    bad.value = b"not json"
    asyncio.run(proc.handle(fetched([bad])))
    assert registry.next_offset == {0: 1}
    assert orjson.loads(changelog(pub)[clock_key(0)])[1][2] == 1
    dlq = [v for t, _, _, v in pub.delivered if t == ws.output_topics["conversation-events-dlq"]]
    assert len(dlq) == 1 and orjson.loads(dlq[0])["reason"] == "not_json"


def test_records_fetched_before_a_rebalance_are_dropped_not_applied_out_of_order(worker_parts):
    """faust-streaming #221/#236: records buffered before a rebalance can reach the
    agent after it, ahead of the records Faust reads again from the committed offset.
    They carry the old generation and are dropped; the re-read copies are applied."""
    ws, table, pub = worker_parts
    proc, registry = make_processor(ws, table, pub)
    proc.generation = lambda: 2
    stale = record(5, event(5))
    fresh = [record(i, event(i)) for i in range(6)]
    assert asyncio.run(proc.handle(fetched([stale], generation=1))) == {}
    assert proc.counts["stale_generation_dropped"] == 1 and registry.next_offset == {}
    asyncio.run(proc.handle(fetched(fresh, generation=2)))
    assert registry.next_offset == {0: 6} and proc.counts["gap_seeks"] == 0
    assert registry.get(0).states["app:u1"].user_events == 6


def test_records_faust_did_not_deliver_are_read_again_before_later_ones(worker_parts):
    """Offsets 2 and 3 never reached the agent: 4 and 5 are not applied (they would be
    out of order and 2, 3 lost), the partition is sought back to 2, the wall clock is
    not used meanwhile (R10), and the re-read log is applied in order."""
    ws, table, pub = worker_parts
    proc, registry = make_processor(ws, table, pub)
    sought: list[tuple[int, int]] = []

    async def seek(partition: int, offset: int) -> None:
        sought.append((partition, offset))

    proc.seek = seek
    asyncio.run(proc.handle(fetched([record(i, event(i)) for i in (0, 1)])))

    async def caught_up_far_later(partition: int):      # would close every session
        return 10 ** 12

    proc.clock.watermark = caught_up_far_later
    asyncio.run(proc.handle(fetched([record(i, event(i)) for i in (4, 5)])))
    assert sought == [(0, 2)] and registry.get(0).states["app:u1"].user_events == 2
    assert registry.get(0).states["app:u1"].sid is not None     # not closed meanwhile
    del proc.clock.watermark                                     # lagging again
    assert orjson.loads(changelog(pub)[clock_key(0)])[1][2] == 2
    asyncio.run(proc.handle(fetched([record(i, event(i)) for i in (2, 3, 4, 5)])))
    assert registry.get(0).states["app:u1"].user_events == 6
    assert registry.next_offset == {0: 6} and sought == [(0, 2)]


def test_offsets_to_commit_never_pass_records_dropped_after_a_gap(worker_parts):
    """The consumer commits what the batch returns: one past the last record of each
    partition, but for an events partition with records dropped after a gap (worker.
    offsets) only up to the first missing one, and ticks up to their last record."""
    ws, table, pub = worker_parts
    proc, registry = make_processor(ws, table, pub)
    tick = SimpleNamespace(topic=ws.topic_ticks, partition=0, offset=11, key=None,
                           value=b"", timestamp=0)
    done = asyncio.run(proc.handle(fetched([record(0, event(0)), record(1, event(1)),
                                            tick])))
    assert done == {(EVENTS, 0): 2, (ws.topic_ticks, 0): 12}
    done = asyncio.run(proc.handle(fetched([record(i, event(i)) for i in (4, 5)])))
    assert done == {(EVENTS, 0): 2}                 # 4 and 5 dropped: read again from 2


# -- a batch's state delivered with the next batch's outputs ------------------------------------
def _changelog_keys(records) -> list:
    return [k for t, _, k, _ in records if t.endswith("changelog")]


def test_while_batches_queue_a_state_rides_with_the_next_batchs_outputs(worker_parts):
    """One acknowledged delivery per batch instead of two: the state of batch 1 goes out
    with the outputs of batch 2, never with its own outputs, and before batch 2's state
    (the changelog keeps one key's states in order)."""
    ws, table, pub = worker_parts
    proc, registry = make_processor(ws, table, pub)
    first = asyncio.run(proc.handle(fetched([record(0, event(0)), record(1, event(1))]),
                                    may_defer=lambda: True))
    assert isinstance(first, Deferred) and first.offsets == {(EVENTS, 0): 2}
    assert len(pub.deliveries) == 1 and not _changelog_keys(pub.deliveries[0])
    assert len(lifecycle(pub)) == 1                              # session-opened, acked

    second = asyncio.run(proc.handle(
        fetched([record(2, event(2)), record(3, event(3, user="u2"))]), first,
        may_defer=lambda: False))
    assert second == {(EVENTS, 0): 4}
    assert len(pub.deliveries) == 3                              # batch 2: one more each
    carried_with_outputs = pub.deliveries[1]
    assert _changelog_keys(carried_with_outputs) == [b"app:u1", clock_key(0)]
    assert any(not t.endswith("changelog") for t, _, _, _ in carried_with_outputs)
    later = _changelog_keys(pub.deliveries[2])
    assert sorted(later[:-1]) == [b"app:u1", b"app:u2"] and later[-1] == clock_key(0)
    assert orjson.loads(changelog(pub)[clock_key(0)])[1][2] == 4
    assert proc.counts["states_deferred"] == 1


def test_a_deferred_state_no_batch_came_for_is_flushed_on_its_own(worker_parts):
    ws, table, pub = worker_parts
    proc, registry = make_processor(ws, table, pub)
    deferred = asyncio.run(proc.handle(fetched([record(0, event(0))]), may_defer=lambda: True))
    assert isinstance(deferred, Deferred) and clock_key(0) not in changelog(pub)
    assert asyncio.run(proc.flush(deferred)) == {(EVENTS, 0): 1}
    assert _changelog_keys(pub.deliveries[-1]) == [b"app:u1", clock_key(0)]
    assert len(lifecycle(pub)) == 1 and proc.counts["states_flushed"] == 1
    # a restart reads what the changelog holds: the batch is not applied twice
    recover(table, pub)
    again, registry = make_processor(ws, table, pub)
    assert registry.next_offset == {0: 1}


def test_exactly_once_never_defers_a_state_out_of_its_transaction(worker_parts):
    ws, table, pub = worker_parts
    proc, _ = make_processor(ws, table, pub)
    proc.exactly_once = True
    done = asyncio.run(proc.handle(fetched([record(0, event(0))]), may_defer=lambda: True))
    assert done == {(EVENTS, 0): 1}
    assert len(pub.deliveries) == 1 and _changelog_keys(pub.deliveries[0]) == [
        b"app:u1", clock_key(0)]
