"""One ``PartitionSessions`` per assigned events partition, kept in step with Kafka's
assignment and rebuilt from the state table after recovery.

Lifecycle (driven by ``worker.app``):

1. ``retain(assigned)`` on every new assignment (Faust's ``on_partitions_assigned``
   signal, before table recovery starts): partitions we no longer own are dropped at once
   (and their keys forgotten by the memory store), so nothing can touch them again.
2. ``rebuild(assigned)`` when Faust reports table recovery completed (``Table.on_recover``
   callback, before the stream resumes): each partition we own but do not hold yet gets a
   fresh ``PartitionSessions`` loaded from the table, its deadline index rebuilt by
   ``load`` and its clock restored. Partitions we kept across the rebalance stay as they
   are: every batch writes its changes before it is acknowledged, so the in-memory state
   already equals the table.

Input positions are stored with the state (Kafka Streams' model): the clock record of
partition ``p`` also carries ``next_offset``, one past the last events record whose
effects the table holds. It is written after the batch's key records on the same
changelog partition (one ordered, idempotent producer), so a restored ``next_offset``
never claims more than the restored keys contain. The processor skips records below it
(they were processed before a restart or rebalance but their offsets were not committed
yet), and ``worker.app`` seeks back to it should the committed offset be ahead of it —
so the table, not Faust's offset commits, decides what has been processed.
"""
from __future__ import annotations

import logging

from .domain import CoreConfig, PartitionSessions, SettingsBook
from .state_table import StateTable

log = logging.getLogger(__name__)


class PartitionRegistry:
    def __init__(self, cfg: CoreConfig, book: SettingsBook, table: StateTable) -> None:
        self.cfg = cfg
        self.book = book
        self.table = table
        self.parts: dict[int, PartitionSessions] = {}
        self.written_clock: dict[int, list[int]] = {}   # last clock written per partition
        self.next_offset: dict[int, int] = {}      # events partition -> next offset to process
        self.assigned: set[int] = set()

    def __contains__(self, partition: int) -> bool:
        return partition in self.parts

    def get(self, partition: int) -> PartitionSessions:
        part = self.parts.get(partition)
        if part is None:
            # The stream only resumes after ``rebuild``; a record for a partition we do
            # not hold means the assignment and our bookkeeping disagree. Processing it
            # against empty state would silently reopen sessions, so refuse.
            raise RuntimeError(f"events partition {partition} is not recovered here")
        return part

    def items(self):
        return self.parts.items()

    def retain(self, assigned: set[int]) -> set[int]:
        """Drop partitions that are no longer assigned; returns the dropped ones."""
        self.assigned = set(assigned)
        dropped = set(self.parts) - self.assigned
        for partition in dropped:
            self.parts.pop(partition)
            self.written_clock.pop(partition, None)
            self.next_offset.pop(partition, None)
        if dropped:
            log.info("dropped partitions %s (revoked)", sorted(dropped))
        return dropped

    def rebuild(self, assigned: set[int]) -> set[int]:
        """Load every assigned partition we do not hold yet; returns the loaded ones.
        The memory store is emptied afterwards (``StateTable.loaded``): the core holds
        every assigned partition now."""
        self.retain(assigned)
        missing = self.assigned - set(self.parts)
        contents = self.table.read(missing) if missing else {}
        self.table.loaded()
        for partition in sorted(missing):
            part = PartitionSessions(self.cfg, self.book)
            found = contents[partition]
            for key, st in found.states:
                part.load(key, st)
            if found.clock is not None:
                part.restore_clock(found.clock[:2])
                if len(found.clock) > 2:
                    self.next_offset[partition] = found.clock[2]
            self.written_clock[partition] = self._clock(partition, part)
            part.take_dirty()           # loading is not a change
            self.parts[partition] = part
            log.info("partition %d: restored %d keys, clock %s",
                     partition, len(found.states), found.clock)
        return missing

    def _clock(self, partition: int, part: PartitionSessions) -> list[int]:
        clock = part.clock()
        nxt = self.next_offset.get(partition)
        return clock if nxt is None else clock + [nxt]

    def on_settings_changed(self, app_id: str) -> list:
        """R19: recompute deadlines of ``app_id``'s keys in every local partition."""
        outs: list = []
        for _, part in sorted(self.parts.items()):
            outs.extend(part.on_settings_changed(app_id))
        return outs

    def collect_writes(self) -> dict[int, tuple[dict, list[int] | None]]:
        """Per partition: the keys changed since the last call and the clock
        ``[stream_time, watermark, next_offset]`` when it moved since it was last written. Snapshot taken synchronously, so it describes
        exactly the outputs produced so far."""
        writes = {}
        for partition, part in self.parts.items():
            dirty = part.take_dirty()
            clock = self._clock(partition, part)
            if clock == self.written_clock.get(partition):
                clock = None
            else:
                self.written_clock[partition] = list(clock)
            if dirty or clock is not None:
                writes[partition] = (dirty, clock)
        return writes

    def stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for part in self.parts.values():
            for name, value in part.stats.items():
                total[name] = total.get(name, 0) + value
        total["keys"] = sum(len(p.states) for p in self.parts.values())
        total["partitions"] = len(self.parts)
        return total
