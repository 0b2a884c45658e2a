"""The deadline index: the next due time of every key of a partition, in due order.

Each key's due time lives on its state (``KeyState.due``; 0 = nothing pending), so an
event that moves it costs no lookup beyond the state it already holds. The index is a
heap of (due, key) entries that are lower bounds: every key with a due time has at
least one entry at or before it. Moving a key's due time earlier pushes a new entry;
moving it later (every activity does) pushes nothing: when the old entry comes up, the
key is pushed again at its current due time. Stale entries (keys that moved on or are
gone) are skipped when popped, and the heap is rebuilt when it outgrows the keys, so
its size stays within a constant factor of them. A clock tick costs O(k log n) for the
k keys that are due (plus the entries of keys that moved on), never a scan of all keys.
"""
from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import Final

from .state import KeyState

_INF: Final = float("inf")


class DeadlineIndex:
    __slots__ = ("_states", "_heap")

    def __init__(self, states: dict[str, KeyState]) -> None:
        self._states = states          # the partition's key states, shared, not copied
        self._heap: list[tuple[int, str]] = []

    def get(self, key: str) -> int | None:
        st = self._states.get(key)
        return st.due or None if st is not None else None

    def min_due(self) -> float:
        """A lower bound of the smallest due time (stale entries included); inf if none."""
        return self._heap[0][0] if self._heap else _INF

    def any_due(self, watermark: int) -> bool:
        """Whether some key may be due at ``watermark`` (``min_due() <= watermark``)."""
        heap = self._heap
        return bool(heap) and heap[0][0] <= watermark

    def set(self, st: KeyState, key: str, due: int | None) -> None:
        """``st`` is the state of ``key`` in the partition's states."""
        new = due if due is not None else 0
        old = st.due
        if old == new:
            return
        st.due = new
        if new and (not old or new < old):   # later due times keep their earlier entry
            heap = self._heap
            heappush(heap, (new, key))
            if len(heap) > 2 * len(self._states) + 1024:
                self._heap = [(s.due, k) for k, s in self._states.items() if s.due]
                heapify(self._heap)

    def pop_due(self, watermark: int) -> str | None:
        """The key with the smallest due time <= watermark (ties by key), or None.
        The key leaves the index (its ``due`` is 0); the caller sets its next due time."""
        heap = self._heap
        states = self._states
        while heap and heap[0][0] <= watermark:
            due, key = heappop(heap)
            st = states.get(key)
            if st is None:
                continue
            current = st.due
            if current == due:
                st.due = 0
                return key
            if current > due:
                heappush(heap, (current, key))   # the key moved on: queue it at its due time
        return None
