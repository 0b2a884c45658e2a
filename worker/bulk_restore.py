"""Changelog restore in bulk: one fetch of a changelog partition under recovery applied
to its table at once (a mixin of ``worker.batching_consumer.BatchingConsumer``).

Changelog records being restored (recovery of an active table partition) are applied
to the table's store per fetch (``_restore``): Faust's recovery path costs about
300 µs per record (a per-record callback awaited with ``wait_first``, a queue, ``asyncio.wait_for`` per
record in ``Recovery._slurp_changelogs``), so a cold restore of 1M sessions took about
six minutes. The store is written with Faust's own ``Table.apply_changelog_batch`` (the
same call Recovery makes, for the memory store and RocksDB alike), Recovery's offset for
the partition is advanced as Recovery would advance it, and the last record of each
fetch still goes through Faust's path as a wake-up: Recovery finds its offset already
seen, skips it, and checks whether recovery is complete.
"""
from __future__ import annotations


class _ChangelogEvent:
    """A Faust ``Event`` of a raw-serialized (bytes) table and its ``Message``, as far
    as the stores' ``apply_changelog_batch`` read them (one object for both)."""

    __slots__ = ("tp", "partition", "offset", "key", "value")

    def __init__(self, tp, record) -> None:
        self.tp = tp
        self.partition = record.partition
        self.offset = record.offset
        self.key = record.key
        self.value = record.value

    @property
    def message(self) -> "_ChangelogEvent":
        return self


class BulkRestore:
    """``_restore`` and ``_skip_markers``, called by the consumer's fetch loop
    (``BatchingConsumer._drain_messages``) with Faust's consumer as ``self``."""

    restored_records: int = 0      # changelog records applied by ``_restore``
    _last_restored: dict | None = None   # tp -> last record applied by ``_restore``

    async def _restore(self, recovery, tp, tp_records: list) -> bool:
        """Apply one fetch of a changelog partition under recovery to its table, in
        order, as Recovery would (see the module docstring). False: leave it to Faust."""
        table = recovery.tp_to_table.get(tp)
        if table is None or table._on_changelog_event is not None:
            return False
        offsets = recovery.active_offsets
        seen = offsets.get(tp)
        r_offset = self._read_offset[tp]
        # as Faust's path: records read before a seek are dropped; Recovery then skips
        # what it already applied (offset <= seen)
        accepted = [r for r in tp_records if r_offset is None or r.offset >= r_offset]
        if not accepted:
            return True
        events = [_ChangelogEvent(tp, r) for r in accepted
                  if seen is None or r.offset > seen]
        if events:
            table.apply_changelog_batch(events)
            offsets[tp] = events[-1].offset
        last = accepted[-1]            # offset <= offsets[tp] now: Recovery skips it
        self._read_offset[tp] = last.offset
        self.restored_records += len(events)
        wake = self._to_message(tp, last)
        if self._last_restored is None:
            self._last_restored = {}
        self._last_restored[tp] = wake
        await self.wait_first(self.callback(wake), self.suspend_flow.wait())
        return True

    async def _skip_markers(self, recovery) -> None:
        """read_committed only. A transaction's commit marker (and every record of an
        aborted transaction) takes an offset but is never delivered, and a changelog
        written in transactions ends with a marker: Recovery, which counts delivered
        offsets up to the high-water mark, would wait for it forever (Faust's own
        ``detect_aborted_tx`` runs only with its exactly-once guarantee, after 10 s).
        The consumer's position is past everything it skipped, and every record before
        it was handed to ``_restore`` already: move Recovery's offset there, and wake
        Recovery with the last applied record so it sees that it is done."""
        offsets = recovery.active_offsets
        position_now = self._thread.position_now
        for tp in list(recovery.active_tps):
            table = recovery.tp_to_table.get(tp)
            if table is None or table._on_changelog_event is not None:
                continue                    # Faust's path applies these: leave them
            position = position_now(tp)
            seen = offsets.get(tp)
            if position is None or (seen is not None and position - 1 <= seen):
                continue
            offsets[tp] = position - 1
            wake = (self._last_restored or {}).get(tp)
            if wake is not None:
                await self.wait_first(self.callback(wake), self.suspend_flow.wait())
