"""Per-key session state in a changelog-backed Faust table.

Table layout (keys and values are raw bytes):

- ``app_id:user_id`` -> ``orjson([partition, to_wire(KeyState)])``; deleted = tombstone
- ``#clock/<p>``     -> ``orjson([partition, [stream_time, watermark, next_offset]])``
  (one per events partition; the name has no ``:`` so it can never be an event key;
  ``next_offset`` is one past the last events record the table reflects, see
  ``worker.partitions``; records written before it existed have only two items)

Why the partition is in the value: Faust's memory store is one dict for all partitions
(it only remembers the partition of keys it *recovered*, not of keys written live), so
after a rebalance the value is the only reliable way to tell which input partition a key
belongs to when the deadline index of a newly assigned partition is rebuilt.

Writes reach RocksDB only after Kafka has them (``settle``): in exactly-once mode a
crash before the transaction's commit must leave no trace, and RocksDB's files outlive
the process. The memory store is only a staging area for recovery: Faust reads the
changelog into it, the worker loads its newly assigned partitions from it into the
core (``read``), and then it is emptied (``loaded``); live writes go to the changelog
only. A second copy of every key's state in the process (one bytes value, its key and
Faust's key-to-partition entry, ~0.45 KB per key) would hold nothing the core and the
changelog do not: a partition kept across a rebalance stays in the core, and one
assigned anew is read from its changelog again.

Why writes do not go through ``table[key] = value``: Faust takes the changelog partition
(and RocksDB's per-partition database) from ``current_event()``, a context variable that
is only set in the task that iterates a Faust stream. Batches are handed to the worker's
batch loop by the consumer (``worker.batching_consumer``), outside any stream, so
``current_event()`` is None ("Cannot modify table outside of agent/stream") and one batch
mixes partitions anyway. We therefore name the partition explicitly: the changelog
record is staged in the batch's outbox for partition ``p`` of the changelog topic (sent
with the worker's own producer, see ``worker.publisher``), and the local store is
written for that same partition. For RocksDB, ``settle(sent)`` also records the
changelog offsets reached, as Faust's ``Collection._on_changelog_sent`` would, so that
a restart only reads the changelog tail beyond what the local files already hold.
"""
from __future__ import annotations

import orjson
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP

from .domain.state import KeyState, from_wire, to_wire
from .publisher import Outbox, Sent

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
        self._pending: list[tuple[int, bytes, bytes | None]] = []   # staged, not yet taken

    @property
    def _rocksdb(self) -> bool:
        return isinstance(self.table.data, RocksDBStore)

    @property
    def changelog_topic(self) -> str:
        return self.table.changelog_topic.get_topic_name()

    # -- writes ------------------------------------------------------------------------
    def write(self, outbox: Outbox, partition: int, dirty: dict[str, KeyState | None],
              clock: list[int] | None) -> int:
        """Stage the keys that changed in one batch (coalesced: one record per key)
        and, when given, the partition clock, as changelog records in the outbox; RocksDB
        takes them in ``settle``, once they are delivered (the memory store never).
        Returns the number of records staged."""
        topic = self.changelog_topic
        stage = outbox.stage
        keep = self._pending.append if self._rocksdb else None
        n = 0
        for key, st in dirty.items():
            value = None if st is None else orjson.dumps([partition, to_wire(st)])
            raw_key = key.encode()
            stage(topic, partition, raw_key, value)
            if keep is not None:
                keep((partition, raw_key, value))
            n += 1
        if clock is not None:
            value = orjson.dumps([partition, clock])
            stage(topic, partition, clock_key(partition), value)
            if keep is not None:
                keep((partition, clock_key(partition), value))
            n += 1
        return n

    def take_unsettled(self) -> list[tuple[int, bytes, bytes | None]]:
        """The records staged by ``write`` since the last call (RocksDB only; else
        empty), to pass to ``settle`` once the outbox holding them is delivered."""
        pending, self._pending = self._pending, []
        return pending

    def settle(self, sent: list[Sent], unsettled: list[tuple[int, bytes, bytes | None]]
               ) -> None:
        """After delivery (or the transaction's commit) of the records ``unsettled``
        (from ``take_unsettled``): RocksDB takes them and remembers how far the changelog
        is covered (``sent``). Its files thus never hold state that Kafka does not (a
        kill -9 between the two leaves them behind the changelog, which a restart reads
        on from there). The memory store takes nothing (module docstring)."""
        if not self._rocksdb:
            return
        store = self.table.data
        for partition, key, value in unsettled:
            db = store._db_for_partition(partition)
            if value is None:
                db.delete(key)
            else:
                db.put(key, value)
                store._key_index[key] = partition
        topic = self.changelog_topic
        for s in sent:
            if s.topic == topic:
                store.set_persisted_offset(TP(topic, s.partition), s.last_offset())

    def loaded(self) -> None:
        """The registry loaded its newly assigned partitions (``read``): empty the memory
        store, values and Faust's key-to-partition index alike. RocksDB keeps its files
        (warm restarts read them)."""
        if self._rocksdb:
            return
        store = self.table.data
        store.data.clear()
        store._key_partition.clear()

    # -- recovery ----------------------------------------------------------------------
    def read(self, partitions: set[int]) -> dict[int, PartitionContents]:
        """Everything the local store holds for ``partitions`` (one pass over the
        store; called after Faust finished restoring it from the changelog)."""
        out = {p: PartitionContents() for p in partitions}
        store = self.table.data
        # Faust's Store.items() decodes every key and value through its serializer
        # registry (a few Python calls per item; raw bytes either way): read the raw
        # items instead (the memory store's dict; RocksDB's per-partition databases of
        # the active partitions), which made a 1M-session rebuild seconds faster
        items = store._iteritems() if self._rocksdb else store.data.items()
        for key, raw in items:
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
