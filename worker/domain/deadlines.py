"""The deadline index: the next due time of every key of a partition, in due order.

Each key's due time lives on its state (``KeyState.due``; 0 = nothing pending), so an
event that moves it costs no lookup beyond the state it already holds. The index holds
entries that are lower bounds: every key with a due time has at least one entry at or
before it. Moving a key's due time earlier adds an entry; moving it later (every
activity does) adds nothing: when the old entry comes up, the key is entered again at
its current due time. Entries of keys that moved on or are gone are skipped then.

Two levels, so that a key waiting for its deadline costs one pointer, not a
(due, key) tuple and a boxed int (~100 B at 1M open sessions):

- **far**: one list of keys per second of due time (``_buckets``), and a heap of those
  seconds (``_secs``);
- **near**: a heap of (due, key) for the seconds the clock has reached. Before the
  index answers for a watermark, every bucket that starts at or before it is opened:
  its keys enter the near heap at their current due time, or, if that lies in a second
  not reached yet, that second's bucket.

So keys come out in (due, key) order, as one heap would give them. The buckets are
rebuilt from the states when they hold more than twice as many entries as there are
keys. A clock tick costs O(k log k) for the k keys of the seconds it reaches (plus those
that moved on), never a scan of all keys.
"""
from __future__ import annotations

from heapq import heappop, heappush
from typing import Final

from .state import KeyState

_INF: Final = float("inf")
BUCKET_MS: Final = 1000


class DeadlineIndex:
    __slots__ = ("_states", "_buckets", "_secs", "_near", "_entries")

    def __init__(self, states: dict[str, KeyState]) -> None:
        self._states = states          # the partition's key states, shared, not copied
        self._buckets: dict[int, list[str]] = {}
        self._secs: list[int] = []
        self._near: list[tuple[int, str]] = []
        self._entries = 0              # keys in the buckets, stale ones included

    def get(self, key: str) -> int | None:
        st = self._states.get(key)
        return st.due or None if st is not None else None

    def min_due(self) -> float:
        """A lower bound of the smallest due time (stale entries included); inf if none."""
        near = self._near[0][0] if self._near else _INF
        far = self._secs[0] * BUCKET_MS if self._secs else _INF
        return near if near < far else far

    def any_due(self, watermark: int) -> bool:
        """Whether some key may be due at ``watermark`` (``min_due() <= watermark``)."""
        near = self._near
        if near and near[0][0] <= watermark:
            return True
        secs = self._secs
        return bool(secs) and secs[0] * BUCKET_MS <= watermark

    def set(self, st: KeyState, key: str, due: int | None) -> None:
        """``st`` is the state of ``key`` in the partition's states."""
        new = due if due is not None else 0
        old = st.due
        if old == new:
            return
        st.due = new
        if new and (not old or new < old):   # later due times keep their earlier entry
            self._add(new, key)

    def pop_due(self, watermark: int) -> str | None:
        """The key with the smallest due time <= watermark (ties by key), or None.
        The key leaves the index (its ``due`` is 0); the caller sets its next due time."""
        near = self._near
        states = self._states
        while True:
            self._open(watermark)
            if not near or near[0][0] > watermark:
                return None
            due, key = heappop(near)
            st = states.get(key)
            if st is None:
                continue
            current = st.due
            if current == due:
                st.due = 0
                return key
            if current > due:
                self._add(current, key)      # the key moved on: enter it at its due time

    def _add(self, due: int, key: str) -> None:
        sec = due // BUCKET_MS
        bucket = self._buckets.get(sec)
        if bucket is None:
            self._buckets[sec] = [key]
            heappush(self._secs, sec)
        else:
            bucket.append(key)
        self._entries += 1
        if self._entries > 2 * len(self._states) + 1024:
            self._rebuild()

    def _open(self, watermark: int) -> None:
        """Every bucket that starts at or before ``watermark`` into the near heap."""
        secs = self._secs
        states = self._states
        near = self._near
        now_sec = watermark // BUCKET_MS
        while secs and secs[0] * BUCKET_MS <= watermark:
            keys = self._buckets.pop(heappop(secs))
            self._entries -= len(keys)
            for key in keys:
                st = states.get(key)
                if st is None or not st.due:
                    continue
                due = st.due
                if due // BUCKET_MS > now_sec:
                    self._add(due, key)          # moved on to a second not reached yet
                else:
                    heappush(near, (due, key))

    def _rebuild(self) -> None:
        # in place: ``_open`` and ``pop_due`` may be iterating over these very objects
        self._buckets.clear()
        self._secs.clear()
        self._near.clear()
        self._entries = 0
        for key, st in self._states.items():
            if st.due:
                self._add(st.due, key)
