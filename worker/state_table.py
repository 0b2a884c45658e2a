"""Per-key session state in a changelog-backed Faust table.

Table layout (keys and values are raw bytes):

- ``app_id:user_id`` -> ``orjson([partition, to_wire(KeyState)])``; deleted = tombstone
- ``#clock/<p>``     -> ``orjson([partition, [stream_time, watermark]])`` (one per events
  partition; the name has no ``:`` so it can never be an event key)

Why the partition is in the value: Faust's memory store is one dict for all partitions
(it only remembers the partition of keys it *recovered*, not of keys written live), so
after a rebalance the value is the only reliable way to tell which input partition a key
belongs to when the deadline index of a newly assigned partition is rebuilt.

Why writes do not go through ``table[key] = value``: Faust takes the changelog partition
(and RocksDB's per-partition database) from ``current_event()``, a context variable that
is only set in the task that iterates the stream. The agent consumes batches with
``take_events()``, whose events are gathered by a background task, so in the agent body
``current_event()`` is None ("Cannot modify table outside of agent/stream") and one batch
mixes partitions anyway. We therefore name the partition explicitly: the changelog
record goes through ``Collection.send_changelog(partition, ...)`` (public; it also keeps
RocksDB's persisted changelog offset up to date via Faust's own callback) and the local
store is written for that same partition.
"""
from __future__ import annotations

from typing import Iterable

import orjson
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import FutureMessage

from .domain.state import KeyState, from_wire, to_wire

CLOCK_PREFIX = b"#clock/"


def clock_key(partition: int) -> bytes:
    return CLOCK_PREFIX + str(partition).encode()


class PartitionContents:
    """What the table holds for one events partition."""

    __slots__ = ("states", "clock")

    def __init__(self) -> None:
        self.states: list[tuple[str, KeyState]] = []
        self.clock: list[int] | None = None


class StateTable:
    def __init__(self, table) -> None:
        self.table = table

    @property
    def _rocksdb(self) -> bool:
        return isinstance(self.table.data, RocksDBStore)

    # -- writes ------------------------------------------------------------------------
    def write(self, partition: int, dirty: dict[str, KeyState | None],
              clock: list[int] | None) -> list[FutureMessage]:
        """Write the keys that changed in one batch (coalesced: one record per key)
        and, when given, the partition clock. Returns the changelog send futures."""
        futures = []
        for key, st in dirty.items():
            value = None if st is None else orjson.dumps([partition, to_wire(st)])
            futures.append(self._put(partition, key.encode(), value))
        if clock is not None:
            futures.append(self._put(partition, clock_key(partition),
                                     orjson.dumps([partition, clock])))
        return futures

    def _put(self, partition: int, key: bytes, value: bytes | None) -> FutureMessage:
        store = self.table.data
        if self._rocksdb:
            db = store._db_for_partition(partition)
            if value is None:
                db.delete(key)
            else:
                db.put(key, value)
                store._key_index[key] = partition
        elif value is None:
            store.pop(key, None)
        else:
            store[key] = value
        return self.table.send_changelog(partition, key, value,
                                         key_serializer="raw", value_serializer="raw")

    def forget(self, partition: int, keys: Iterable[str]) -> None:
        """Drop a revoked partition's keys from the local memory store (not from the
        changelog). Otherwise stale copies would linger in the shared dict and could
        resurface if the partition came back after its tombstones were compacted away.
        RocksDB keeps one database per partition and closes it on revocation itself."""
        if self._rocksdb:
            return
        store = self.table.data
        for key in keys:
            store.pop(key.encode(), None)
        store.pop(clock_key(partition), None)

    # -- recovery ----------------------------------------------------------------------
    def read(self, partitions: set[int]) -> dict[int, PartitionContents]:
        """Everything the local store holds for ``partitions`` (one pass over the
        store; called after Faust finished restoring it from the changelog)."""
        out = {p: PartitionContents() for p in partitions}
        for key, raw in self.table.data.items():
            if raw is None:
                continue
            partition, payload = orjson.loads(raw)
            contents = out.get(partition)
            if contents is None:
                continue
            if key.startswith(CLOCK_PREFIX):
                contents.clock = payload
            else:
                contents.states.append((key.decode(), from_wire(payload)))
        return out
