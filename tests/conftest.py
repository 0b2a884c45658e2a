"""Fixtures shared by the broker-backed suites (integration, e2e)."""
from __future__ import annotations

import time

import pytest

from tests.kafka_harness import BOOTSTRAP, broker_up


@pytest.fixture(scope="session")
def kafka() -> str:
    """The address of a reachable broker (make test starts one: deploy/kafka-local)."""
    deadline = time.monotonic() + 120
    while not broker_up():
        if time.monotonic() > deadline:
            pytest.fail(f"no Kafka broker at {BOOTSTRAP} (start it: make kafka-up)")
        time.sleep(1)
    return BOOTSTRAP
