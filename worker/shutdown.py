"""A deadline on the graceful stop (SHUTDOWN_TIMEOUT_S), like Kafka Streams' ``close(timeout)``.

A SIGTERM or SIGINT starts Faust's stop: the last batch finishes, the publisher flushes
outputs and state (``stopped:`` in the log), the consumer commits and leaves the group.
That last step can hang: once aiokafka's group coordinator is closing it no longer
looks the coordinator up again, and its commit and heartbeat loops retry
``GroupCoordinatorNotAvailableError`` forever (seen once in CI; the family of aiokafka
#659). The worker then never exits by itself.

``ShutdownDeadline`` is armed when the stop begins and runs in its own thread, so it
fires even if the event loop is stuck. When it fires it says what was and was not done
and ends the process (``exit_now``, which ``processor.fatal`` uses too):

- exit 0 if the publisher had flushed (every output of every processed record and the
  state are in Kafka): what is left undone is only the last offset commit and the group
  leave. A restart reads again from the last committed offset; the state skips what it
  applied, and with at-least-once a few outputs may be published again, identical;
- exit ``EXIT_SHUTDOWN_TIMEOUT`` otherwise (the flush itself did not finish): nothing
  unflushed was committed, so nothing is lost either, but the operator should look.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Callable

log = logging.getLogger("worker.shutdown")

EXIT_SHUTDOWN_TIMEOUT = 75


def exit_now(code: int) -> None:
    """End the process at once (no cleanup, no commit), with the log written out."""
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:    # noqa: BLE001 - exiting anyway
            pass
    sys.stderr.flush()
    os._exit(code)


class ShutdownDeadline:
    def __init__(self, timeout_s: float, exit_fn: Callable[[int], None] = exit_now) -> None:
        self.timeout_s = timeout_s
        self._exit = exit_fn
        self._timer: threading.Timer | None = None
        self.armed_at: float | None = None
        self.flushed = False          # set once outputs and state are in Kafka

    def arm(self, reason: str) -> None:
        """Start counting (idempotent: a second signal does not restart the clock)."""
        if self._timer is not None or self.timeout_s <= 0:
            return
        self.armed_at = time.monotonic()
        log.info("stopping (%s): the process exits within %.0f s whatever happens",
                 reason, self.timeout_s)
        self._timer = threading.Timer(self.timeout_s, self.fire)
        self._timer.daemon = True
        self._timer.name = "shutdown-deadline"
        self._timer.start()

    def mark_flushed(self) -> None:
        self.flushed = True

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def fire(self) -> None:
        if self.flushed:
            log.warning("shutdown deadline: the stop did not finish in %.0f s; outputs and "
                        "state were flushed, the last offset commit or the group leave was "
                        "not: exiting (a restart reads again from the last committed "
                        "offset)", self.timeout_s)
            code = 0
        else:
            log.error("shutdown deadline: the stop did not finish in %.0f s and outputs or "
                      "state were not flushed (nothing unflushed was committed): exiting "
                      "with code %d", self.timeout_s, EXIT_SHUTDOWN_TIMEOUT)
            code = EXIT_SHUTDOWN_TIMEOUT
        self._exit(code)
