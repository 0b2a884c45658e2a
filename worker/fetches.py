"""What the consumer hands to the batch loop: the records of one fetch, as aiokafka
delivered them, with the consumer group generation they were fetched in.

Faust would wrap every record in a ``ConsumerMessage``, track it in a ``WeakSet`` and
have it acknowledged one by one; on the 2-core VM that bookkeeping cost about a third
of the worker's main thread (py-spy, 1M-event backlog). Here a fetch is acknowledged as
a whole: after its batch is durable the batch loop reports, per topic-partition, the
offset to commit (``BatchingConsumer.fetches_done``).
"""
from __future__ import annotations

from typing import Any, Hashable, Iterable


class Fetch:
    """``records``: aiokafka ``ConsumerRecord`` objects (``topic``, ``partition``,
    ``offset``, ``key``, ``value``, ``timestamp``), in offset order per partition;
    ``ends``: topic-partition -> one past its last record here."""

    __slots__ = ("generation", "records", "ends")

    def __init__(self, generation: int, records: list, ends: dict[Hashable, int]) -> None:
        self.generation = generation
        self.records = records
        self.ends = ends

    @classmethod
    def of(cls, generation: int, records: Iterable[Any]) -> "Fetch":
        """A fetch of ``records`` (tests; the consumer builds ``ends`` as it goes)."""
        records = list(records)
        ends: dict[Hashable, int] = {}
        for r in records:
            ends[(r.topic, r.partition)] = r.offset + 1
        return cls(generation, records, ends)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"Fetch(generation={self.generation}, {len(self.records)} records)"
