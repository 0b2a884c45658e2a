"""The bulk changelog restore (``BatchingConsumer._restore``): a fetch of a changelog
partition under recovery is applied in order with the table's own
``apply_changelog_batch``, Recovery's offset moves as Recovery would move it, and the
wake-up record handed to Faust's path is one Recovery has already seen (so it skips
it). The restart tests prove the same on a real broker."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.types import TP

from worker.batching_consumer import BatchingConsumer

TP0 = TP("app-sessions-changelog", 0)


def rec(offset: int, key: bytes, value: bytes | None):
    return SimpleNamespace(partition=0, offset=offset, key=key, value=value)


class FakeTable:
    _on_changelog_event = None

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.batches: list[list[int]] = []

    def apply_changelog_batch(self, events) -> None:
        self.batches.append([e.message.offset for e in events])
        for e in events:
            assert e.message.tp == TP0 and e.message.partition == 0
            if e.message.value is None:
                self.data.pop(e.key, None)
            else:
                self.data[e.key] = e.value


class FakeConsumer:
    """The attributes of Faust's consumer that ``_restore`` uses."""

    def __init__(self, read_offset: int | None) -> None:
        self._read_offset = {TP0: read_offset}
        self.restored_records = 0
        self._last_restored = None
        self.positions: dict = {}
        self._thread = SimpleNamespace(position_now=self.positions.get)
        self.woken: list[int] = []
        self.suspend_flow = SimpleNamespace(wait=lambda: asyncio.sleep(0))

    def _to_message(self, tp, record):
        return record

    async def callback(self, message) -> None:
        self.woken.append(message.offset)

    async def wait_first(self, *coros):
        await coros[0]
        coros[1].close()


def restore(consumer, recovery, records) -> bool:
    return asyncio.run(BatchingConsumer._restore(consumer, recovery, TP0, records))


def make(seen: int | None, read_offset: int | None = None):
    table = FakeTable()
    recovery = SimpleNamespace(tp_to_table={TP0: table}, active_offsets={TP0: seen},
                               active_tps={TP0})
    return table, recovery, FakeConsumer(read_offset)


def skip_markers(consumer, recovery) -> None:
    asyncio.run(BatchingConsumer._skip_markers(consumer, recovery))


def test_a_fetch_is_applied_in_order_and_recovery_offset_advances():
    table, recovery, consumer = make(seen=-1)
    records = [rec(0, b"a", b"1"), rec(1, b"b", b"1"), rec(2, b"a", b"2"), rec(3, b"b", None)]
    assert restore(consumer, recovery, records)
    assert table.batches == [[0, 1, 2, 3]]
    assert table.data == {b"a": b"2"}                  # last write wins, tombstone deletes
    assert recovery.active_offsets[TP0] == 3
    assert consumer._read_offset[TP0] == 3 and consumer.restored_records == 4
    # the wake-up for Recovery's completion check is a record it has already seen
    assert consumer.woken == [3] and consumer.woken[0] <= recovery.active_offsets[TP0]


def test_records_recovery_already_applied_are_not_applied_again():
    table, recovery, consumer = make(seen=5)
    table.data[b"a"] = b"newer"
    assert restore(consumer, recovery, [rec(4, b"a", b"older"), rec(5, b"a", b"newer"),
                                        rec(6, b"c", b"1")])
    assert table.batches == [[6]] and table.data == {b"a": b"newer", b"c": b"1"}
    assert recovery.active_offsets[TP0] == 6 and consumer.woken == [6]


def test_a_fetch_recovery_has_fully_seen_changes_nothing_but_still_wakes_it():
    table, recovery, consumer = make(seen=9)
    assert restore(consumer, recovery, [rec(8, b"a", b"1"), rec(9, b"a", b"2")])
    assert table.batches == [] and recovery.active_offsets[TP0] == 9
    assert consumer.woken == [9]


def test_records_read_before_a_seek_are_dropped_without_moving_the_read_offset():
    table, recovery, consumer = make(seen=-1, read_offset=10)
    assert restore(consumer, recovery, [rec(7, b"a", b"stale"), rec(8, b"a", b"stale")])
    assert table.batches == [] and consumer.woken == []
    assert consumer._read_offset[TP0] == 10


def test_tables_with_a_changelog_callback_are_left_to_faust():
    table, recovery, consumer = make(seen=-1)
    table._on_changelog_event = object()
    assert restore(consumer, recovery, [rec(0, b"a", b"1")]) is False
    assert table.batches == [] and consumer.woken == []


def test_read_committed_recovery_steps_over_the_trailing_commit_marker_and_wakes_recovery():
    """Exactly-once: the changelog is written in transactions, so its last offset is a
    commit marker that is never delivered. The consumer's position is past it; Recovery's
    offset moves there and Recovery is woken with the last applied record."""
    table, recovery, consumer = make(seen=-1)
    assert restore(consumer, recovery, [rec(0, b"a", b"1"), rec(1, b"a", b"2")])
    consumer.positions[TP0] = 3                    # offset 2 is the commit marker
    skip_markers(consumer, recovery)
    assert recovery.active_offsets[TP0] == 2
    assert consumer.woken == [1, 1] and table.data == {b"a": b"2"}
    skip_markers(consumer, recovery)               # nothing new: no second wake-up
    assert consumer.woken == [1, 1]


def test_skipping_markers_never_moves_recovery_back_or_touches_faust_handled_tables():
    table, recovery, consumer = make(seen=7)
    consumer.positions[TP0] = 5                    # before a seek settled: ignore
    skip_markers(consumer, recovery)
    assert recovery.active_offsets[TP0] == 7 and consumer.woken == []
    table._on_changelog_event = object()           # Faust applies these records itself
    consumer.positions[TP0] = 20
    skip_markers(consumer, recovery)
    assert recovery.active_offsets[TP0] == 7 and consumer.woken == []


def test_a_partition_of_only_aborted_records_and_markers_counts_as_read():
    table, recovery, consumer = make(seen=None)
    consumer.positions[TP0] = 4                    # nothing committed was ever delivered
    skip_markers(consumer, recovery)
    assert recovery.active_offsets[TP0] == 3 and consumer.woken == [] and table.batches == []
