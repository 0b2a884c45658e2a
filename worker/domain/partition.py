"""One input partition: its key states, clock (R10) and deadline index.

``PartitionSessions`` is what the worker keeps per assigned partition and what
``replay`` runs for partition 0. Every method appends outputs in publication order.
State changes are tracked in ``dirty`` so the shell can write them to its table once
per batch.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Final

from . import rules
from .config import CoreConfig
from .deadlines import DeadlineIndex
from .events import Event
from .ids import event_digest, seen_contains
from .outputs import CLOSED, OPENED, Output
from .settings import SettingsBook
from .state import KeyState

NO_TIME: Final = -(2 ** 62)


class PartitionSessions:
    def __init__(self, cfg: CoreConfig, book: SettingsBook) -> None:
        self.cfg = cfg
        self.fast_path = True        # tests turn it off to check it against the rules
        self.lateness_ms = cfg.lateness_ms
        self.book = book
        self.states: dict[str, KeyState] = {}
        self.index = DeadlineIndex(self.states)
        self.stream_time = NO_TIME   # greatest ts of a valid event consumed (R10)
        self.watermark = NO_TIME     # never moves backwards
        self.dirty: set[str] = set()
        self.open_sessions = 0       # kept in step with the outputs, for metrics
        self.stats: dict[str, int] = defaultdict(int)

    # -- input ----------------------------------------------------------------------
    def on_event(self, ev: Event) -> list[Output]:
        """R10: the record first advances the clock (closing what became due), then
        is applied (R21 duplicates change nothing)."""
        outs = self._on_event(ev)
        if outs:
            self._count_open(outs)
        return outs

    def _count_open(self, outs: list[Output]) -> None:
        for topic, _, _ in outs:
            if topic == OPENED:
                self.open_sessions += 1
            elif topic == CLOSED:
                self.open_sessions -= 1

    def _on_event(self, ev: Event) -> list[Output]:
        outs: list[Output] = []
        ts = ev.ts
        if ts > self.stream_time:
            self.stream_time = ts
            wm = ts - self.lateness_ms
            if wm > self.watermark:
                self.watermark = wm
                if self.index.any_due(wm):
                    self._fire(outs)
        key = ev.key
        st = self.states.get(key)
        digest = event_digest(ev.event_id)
        if st is not None and digest in st.seen and seen_contains(st.seen, digest):
            self.stats["duplicates"] += 1
            return outs
        s = self.book.get(ev.app_id)
        cfg = self.cfg
        due: int | None
        if (self.fast_path and st is not None and st.sid is not None
                and rules.fast_activity(st, ev, digest, s, cfg)):
            due = rules.session_due(st, s, cfg)      # = next_due of an open session
        else:
            st = rules.apply_event(st, ev, digest, s, cfg, self.stats, outs)
            if st is None:
                return outs
            self.states[key] = st
            due = rules.next_due(st, s, cfg)
        self.dirty.add(key)
        self.index.set(st, key, due)
        if due is not None and due <= self.watermark:
            self._fire(outs)     # a late event whose session is already due
        return outs

    def advance_to(self, watermark: int) -> list[Output]:
        """Move the clock forward (the shell's wall-clock component while caught up)."""
        outs: list[Output] = []
        if watermark > self.watermark:
            self.watermark = watermark
            self._fire(outs)
            self._count_open(outs)
        return outs

    def on_settings_changed(self, app_id: str) -> list[Output]:
        """R19: new settings apply at once; deadlines are recomputed from activity time.
        Scans this partition's keys once per settings change (rare), never per tick."""
        for key, st in self.states.items():
            if st.app == app_id:
                self._reindex(key, st)
        outs: list[Output] = []
        self._fire(outs)
        self._count_open(outs)
        return outs

    # -- persistence -------------------------------------------------------------------
    def load(self, key: str, st: KeyState | None) -> None:
        """Restore one key (recovery); None deletes it."""
        old = self.states.get(key)
        if old is not None and old.sid is not None:
            self.open_sessions -= 1
        if st is None:
            self.states.pop(key, None)       # its heap entries go stale
        else:
            self.states[key] = st
            st.due = 0                       # not indexed here yet, whatever it was
            self._reindex(key, st)
            if st.sid is not None:
                self.open_sessions += 1

    def clock(self) -> list[int]:
        return [self.stream_time, self.watermark]

    def restore_clock(self, clock: list[int]) -> None:
        self.stream_time = max(self.stream_time, clock[0])
        self.watermark = max(self.watermark, clock[1])

    def take_dirty(self) -> dict[str, KeyState | None]:
        """Keys changed since the last call, with their state (None = deleted)."""
        changed = {key: self.states.get(key) for key in self.dirty}
        self.dirty = set()
        return changed

    def due_of(self, key: str) -> int | None:
        return self.index.get(key)

    # -- clock -------------------------------------------------------------------------
    def _reindex(self, key: str, st: KeyState) -> None:
        self.index.set(st, key, rules.next_due(st, self.book.get(st.app), self.cfg))

    def _fire(self, outs: list[Output]) -> None:
        wm = self.watermark
        while (key := self.index.pop_due(wm)) is not None:
            st = self.states[key]
            kept = rules.on_due(st, key, self.book.get(st.app), self.cfg, wm, self.stats, outs)
            self.dirty.add(key)
            if kept is None:
                del self.states[key]         # its heap entries go stale
            else:
                self._reindex(key, kept)
