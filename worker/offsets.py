"""Which input records to apply, per events partition, so that each is applied once and
in offset order whatever Faust delivers.

The table stores each partition's ``next_offset`` with its state (``worker.partitions``).
Against it, a record at ``offset`` is:

- below it: already reflected by the state (redelivered after a restart or a
  rebalance, offsets not committed yet): **skip**;
- equal: **apply** (and the expectation moves to ``offset + 1``);
- above it: records in between were not delivered. Faust can lose records between
  batches (seen on restarts: three records of each partition missing at a take-buffer
  boundary) — or the log may really have no records there (compaction, transaction
  markers). So the first time, **drop** it and every later record of the partition and
  ask for a **seek** back to ``next_offset``; the log is read again from there. If the
  same offset is then delivered again before ``next_offset`` is, the gap is real:
  apply from there.

Pure bookkeeping (no Kafka); ``worker.processor`` acts on the verdicts.
"""
from __future__ import annotations

APPLY, SKIP, DROP, DROP_AND_SEEK = 0, 1, 2, 3


class OffsetGuard:
    def __init__(self, next_offset: dict[int, int]) -> None:
        self.next_offset = next_offset          # shared with the partition registry
        self.resync: dict[int, list[int]] = {}  # partition -> [first offset past the gap, sightings]

    def verdict(self, partition: int, offset: int) -> int:
        expected = self.next_offset.get(partition)
        if expected is None or offset == expected:
            self.resync.pop(partition, None)
            self.next_offset[partition] = offset + 1
            return APPLY
        if offset < expected:
            return SKIP
        pending = self.resync.get(partition)
        if pending is None:
            self.resync[partition] = [offset, 1]
            return DROP_AND_SEEK
        if offset == pending[0]:
            pending[1] += 1
            if pending[1] >= 2:                 # read again from next_offset: a real gap
                del self.resync[partition]
                self.next_offset[partition] = offset + 1
                return APPLY
        return DROP

    def forget(self, partition: int) -> None:
        self.resync.pop(partition, None)

    def reset(self) -> None:
        """After a rebalance: Faust seeks every partition again."""
        self.resync.clear()
