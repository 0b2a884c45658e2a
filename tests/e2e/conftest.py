import time

import pytest

from tests.kafka_harness import BOOTSTRAP, broker_up


@pytest.fixture(scope="session")
def kafka() -> str:
    deadline = time.monotonic() + 120
    while not broker_up():
        if time.monotonic() > deadline:
            pytest.fail(f"no Kafka broker at {BOOTSTRAP} (start it: make kafka-up)")
        time.sleep(1)
    return BOOTSTRAP
