"""FETCH_MAX_WAIT_MS and FETCH_MIN_BYTES reach the aiokafka consumer that Faust's consumer
thread creates (README "Configuration"). What they buy is measured, not asserted here:
``bench/results/fetch-min-bytes-20261127.txt`` (CPU per second of paced traffic and the
latency at half load)."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from worker import raw_records
from worker.batching_consumer import FETCH_MIN_BYTES, BatchingConsumer, ShortWaitConsumerThread
from worker.settings_env import settings_from_env


def test_fetch_min_bytes_defaults_to_256_kib_and_can_be_set(monkeypatch):
    monkeypatch.delenv("FETCH_MIN_BYTES", raising=False)
    assert settings_from_env().fetch_min_bytes == FETCH_MIN_BYTES == 256 * 1024
    monkeypatch.setenv("FETCH_MIN_BYTES", "1")
    assert settings_from_env().fetch_min_bytes == 1


@pytest.mark.parametrize("value", ["0", "-5"])
def test_fetch_min_bytes_below_one_is_a_configuration_error(monkeypatch, value):
    monkeypatch.setenv("FETCH_MIN_BYTES", value)
    with pytest.raises(SystemExit):
        settings_from_env()


def test_the_consumer_thread_gives_aiokafka_the_fetch_wait_and_minimum(monkeypatch):
    created = {}

    def faust_consumer(self, transport):
        # what Faust's thread builds, with aiokafka's own defaults (1 byte, 500 ms)
        created["c"] = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
        return created["c"]

    monkeypatch.setattr(AIOKafkaConsumerThread, "_create_worker_consumer", faust_consumer)
    monkeypatch.setattr(raw_records, "RAW_TOPICS", set())
    ours = BatchingConsumer.__new__(BatchingConsumer)
    ours.hand_over(["events", "ticks"], sink=None, fetch_max_wait_ms=35,
                   fetch_min_bytes=4096)
    thread = ShortWaitConsumerThread.__new__(ShortWaitConsumerThread)
    thread.consumer = ours

    async def build():
        return thread._create_worker_consumer(SimpleNamespace())

    consumer = asyncio.run(build())
    assert consumer is created["c"]
    # the attributes AIOKafkaConsumer.start() hands to its Fetcher
    assert consumer._fetch_max_wait_ms == 35
    assert consumer._fetch_min_bytes == 4096
    assert consumer._isolation_level == "read_uncommitted"
