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

from faust.types import TP


class Fetch:
    """``groups``: (topic-partition, records) in fetch order, each partition's records in
    offset order. Records of the batch topics are aiokafka's parsed records
    (``offset``, ``key``, ``value``, ``timestamp``; ``worker.raw_records``); the topic and
    partition are the group's. ``ends``: topic-partition -> one past its last record."""

    __slots__ = ("generation", "groups", "ends", "count")

    def __init__(self, generation: int, groups: list[tuple[Any, list]],
                 ends: dict[Hashable, int], count: int) -> None:
        self.generation = generation
        self.groups = groups
        self.ends = ends
        self.count = count

    @classmethod
    def of(cls, generation: int, records: Iterable[Any]) -> "Fetch":
        """A fetch of ``records`` that carry ``topic`` and ``partition`` (tests; the
        consumer builds its fetches as it goes): consecutive records of one partition
        form a group."""
        groups: list[tuple[Any, list]] = []
        ends: dict[Hashable, int] = {}
        n = 0
        for r in records:
            tp = TP(r.topic, r.partition)
            if not groups or groups[-1][0] != tp:
                groups.append((tp, []))
            groups[-1][1].append(r)
            ends[tp] = r.offset + 1
            n += 1
        return cls(generation, groups, ends, n)

    def records(self) -> Iterable[Any]:
        for _, records in self.groups:
            yield from records

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"Fetch(generation={self.generation}, {self.count} records)"
