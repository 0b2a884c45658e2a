"""The graceful stop's deadline (worker.shutdown, SHUTDOWN_TIMEOUT_S): whatever hangs in
the stop, the process ends, with exit 0 only if outputs and state were flushed."""
from __future__ import annotations

import threading
import time

from worker.shutdown import EXIT_SHUTDOWN_TIMEOUT, ShutdownDeadline


class Exits:
    def __init__(self) -> None:
        self.codes: list[int] = []
        self.called = threading.Event()

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self.called.set()


def _armed(timeout_s: float) -> tuple[Exits, ShutdownDeadline]:
    exits = Exits()
    deadline = ShutdownDeadline(timeout_s, exits)
    deadline.arm("SIGTERM")
    return exits, deadline


def test_stop_stuck_after_the_flush_exits_zero_at_the_deadline():
    exits, deadline = _armed(0.05)
    deadline.mark_flushed()
    assert exits.called.wait(5)
    assert exits.codes == [0]


def test_stop_stuck_before_the_flush_exits_with_the_timeout_code():
    exits, _ = _armed(0.05)
    assert exits.called.wait(5)
    assert exits.codes == [EXIT_SHUTDOWN_TIMEOUT]


def test_a_second_signal_does_not_restart_the_clock():
    exits, deadline = _armed(0.3)
    armed = deadline.armed_at
    time.sleep(0.1)
    deadline.arm("SIGINT")
    assert deadline.armed_at == armed
    assert exits.called.wait(5)
    assert exits.codes == [EXIT_SHUTDOWN_TIMEOUT]


def test_nothing_fires_before_the_deadline_or_when_disabled():
    exits, running = _armed(30)
    disabled = ShutdownDeadline(0, exits)
    disabled.arm("SIGTERM")
    assert not exits.called.wait(0.2)
    assert disabled.armed_at is None
    running.cancel()
