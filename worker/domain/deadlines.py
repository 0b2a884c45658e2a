"""The deadline index: the next due time of every key of a partition, in due order.

A heap of (due, key) entries that are lower bounds: every indexed key has at least one
entry at or before its due time. Moving a key's due time earlier pushes a new entry;
moving it later (every activity does) pushes nothing: when the old entry comes up, the
key is pushed again at its current due time. Stale entries are skipped when popped, and
the heap is rebuilt when it outgrows the keys it tracks, so its size stays within a
constant factor of them. A clock tick costs O(k log n) for the k keys that are due (plus
the entries of keys that moved on), never a scan of all keys.
"""
from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import Final

_INF: Final = float("inf")


class DeadlineIndex:
    __slots__ = ("_due", "_heap")

    def __init__(self) -> None:
        self._due: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._due)

    def get(self, key: str) -> int | None:
        return self._due.get(key)

    def min_due(self) -> float:
        """A lower bound of the smallest due time (stale entries included); inf if none."""
        return self._heap[0][0] if self._heap else _INF

    def any_due(self, watermark: int) -> bool:
        """Whether some key may be due at ``watermark`` (``min_due() <= watermark``)."""
        heap = self._heap
        return bool(heap) and heap[0][0] <= watermark

    def set(self, key: str, due: int | None) -> None:
        due_of = self._due
        if due is None:
            due_of.pop(key, None)
            return
        old = due_of.get(key)
        if old == due:
            return
        due_of[key] = due
        if old is None or due < old:   # later due times keep their earlier entry
            heap = self._heap
            heappush(heap, (due, key))
            if len(heap) > 2 * len(due_of) + 1024:
                self._heap = [(d, k) for k, d in due_of.items()]
                heapify(self._heap)

    def pop_due(self, watermark: int) -> str | None:
        """The key with the smallest due time <= watermark (ties by key), or None.
        The key leaves the index; the caller sets its next due time."""
        heap = self._heap
        due_of = self._due
        while heap and heap[0][0] <= watermark:
            due, key = heappop(heap)
            current = due_of.get(key)
            if current == due:
                del due_of[key]
                return key
            if current is not None and current > due:
                heappush(heap, (current, key))   # the key moved on: queue it at its due time
        return None

    def clear(self) -> None:
        self._due.clear()
        self._heap.clear()
