"""The deadline index: the next due time of every key of a partition, in due order.

A heap of (due, key) with lazy invalidation: moving a key's due time pushes a new entry
and leaves the old one to be skipped when popped. The heap is rebuilt when stale entries
outnumber live ones, so its size stays within a constant factor of the keys it tracks.
A clock tick costs O(k log n) for the k keys that are due, never a scan of all keys.
"""
from __future__ import annotations

import heapq

_INF = float("inf")


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

    def set(self, key: str, due: int | None) -> None:
        due_of = self._due
        if due is None:
            due_of.pop(key, None)
            return
        if due_of.get(key) == due:
            return
        due_of[key] = due
        heapq.heappush(self._heap, (due, key))
        if len(self._heap) > 2 * len(due_of) + 1024:
            self._heap = [(d, k) for k, d in self._due.items()]
            heapq.heapify(self._heap)

    def pop_due(self, watermark: int) -> str | None:
        """The key with the smallest due time <= watermark (ties by key), or None.
        The key stays indexed; the caller sets its next due time."""
        heap = self._heap
        due_of = self._due
        while heap and heap[0][0] <= watermark:
            due, key = heap[0]
            if due_of.get(key) == due:
                heapq.heappop(heap)
                return key
            heapq.heappop(heap)
        return None

    def clear(self) -> None:
        self._due.clear()
        self._heap.clear()
