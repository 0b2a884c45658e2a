"""A broker restart mid-stream (issue 5): the worker does not exit, and once the broker
is back everything it publishes is what ``replay`` computes — nothing lost, nothing
changed (repeats, if any, are identical: at-least-once).

Runs against a broker of its own (deploy/kafka-local on free ports, its own data dir),
so stopping it does not disturb the shared test broker."""
from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from tests.kafka_harness import (MIN, REPO, SEC, assert_same_outputs, consume_outputs,
                                 conversation_items, dedupe, log_lines, now_ms,
                                 produce_lines, replay_expected, run, settings_item,
                                 unique_env)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

SCRIPTS = REPO / "deploy" / "kafka-local"
USERS = 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateBroker:
    def __init__(self, data_dir) -> None:
        self.env = {**os.environ, "KAFKA_PORT": str(_free_port()),
                    "KAFKA_CONTROLLER_PORT": str(_free_port()),
                    "KAFKA_DATA_DIR": str(data_dir)}
        self.bootstrap = f"127.0.0.1:{self.env['KAFKA_PORT']}"

    def _script(self, name: str, **extra: str) -> None:
        subprocess.run(["bash", str(SCRIPTS / name)], env={**self.env, **extra},
                       check=True, timeout=180)

    def start(self, fresh: bool = False) -> None:
        self._script("start.sh", KAFKA_FRESH="1" if fresh else "0")

    def stop(self) -> None:
        self._script("stop.sh")


@pytest.fixture
def broker(tmp_path):
    b = PrivateBroker(tmp_path / "kafka")
    b.start(fresh=True)
    yield b
    b.stop()


def test_broker_restart_mid_stream_worker_survives_and_loses_nothing(broker, workers,
                                                                     tmp_path):
    env = unique_env("broker-restart", tmp_path, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap)
    settings = [settings_item("br", {"inactivity_minutes": 5})]
    # deadlines ~55 s from now: sessions stay open across the outage, then close by
    # the wall clock once the broker is back
    base = now_ms() - 5 * MIN + 55 * SEC
    events = conversation_items("br", USERS, base, 4_000)
    lines = log_lines(settings + events)
    half = 1 + len(events) // 2

    worker = workers(env, "worker")
    worker.wait_ready()
    run(produce_lines(env, lines[:half]))
    time.sleep(0.5)                                   # the worker is busy with them
    broker.stop()
    time.sleep(8)                                     # outage
    assert worker.proc.poll() is None, worker.log()[-3000:]
    broker.start()
    run(produce_lines(env, lines[half:]))

    deadline = base + 5 * MIN + len(events)
    expected = replay_expected(lines, until=deadline)
    assert sum(t == "session-closed" for t, _, _ in expected) == USERS
    outputs = run(consume_outputs(env, quiet_s=3, timeout_s=150, until=lambda out: sum(
        o.topic == "session-closed" for o in out) >= USERS))
    assert worker.proc.poll() is None, worker.log()[-3000:]
    unique = dedupe(outputs)
    print(f"outputs repeated across the broker restart: {len(outputs) - len(unique)}")
    assert_same_outputs(unique, expected, env)
    assert worker.stop() == 0
