"""Fixtures for the integration tests (the broker fixture is in tests/conftest.py): per-test worker env, and
worker processes that are always stopped at teardown."""
from __future__ import annotations

import pytest

from tests.kafka_harness import WorkerProcess, unique_env


@pytest.fixture
def env(kafka, request, tmp_path) -> dict:
    return unique_env(request.node.name[:40].replace("_", "-").lower(), tmp_path)


@pytest.fixture
def workers(tmp_path):
    """``start(env, name)`` -> a started WorkerProcess; all are killed at teardown."""
    started: list[WorkerProcess] = []

    def start(env: dict, name: str = "worker") -> WorkerProcess:
        proc = WorkerProcess(env, tmp_path / f"{name}-{len(started)}.log").start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc and proc.proc.poll() is None:
            proc.kill()
