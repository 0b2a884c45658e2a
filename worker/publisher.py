"""Outputs of the core -> Kafka records on the configured topics (CONTRACT.md).

Everything is queued with ``send_soon`` (no await per record); the caller awaits all the
returned futures of a batch at once (``delivered``) before it writes the state that
records the batch's effects, so an output is always durable before the state that says
it was emitted (at-least-once, nothing lost).
"""
from __future__ import annotations

import asyncio
from collections import Counter
from typing import Iterable

import orjson
from faust.types import FutureMessage

from .codec import Reject, dead_letter
from .domain.outputs import DEAD_LETTER, Output
from .settings_env import WorkerSettings

DELIVERY_TIMEOUT_S = 120.0


class DeliveryFailed(RuntimeError):
    """A batch's records were not acknowledged by Kafka: the batch must not be
    acknowledged either (the worker exits and reprocesses it after a restart)."""


class Publisher:
    def __init__(self, app, ws: WorkerSettings) -> None:
        self.topics = {
            default: app.topic(name, key_type=bytes, value_type=bytes,
                               key_serializer="raw", value_serializer="raw")
            for default, name in ws.output_topics.items()
        }
        self.counts: Counter[str] = Counter()

    def publish(self, outputs: Iterable[Output]) -> list[FutureMessage]:
        topics = self.topics
        dumps = orjson.dumps
        futures = []
        for topic, key, value in outputs:
            futures.append(topics[topic].send_soon(key=key.encode(), value=dumps(value)))
            self.counts[topic] += 1
        return futures

    def dead_letter(self, reject: Reject, topic: str, partition: int, offset: int,
                    key: bytes | None, value: bytes | None) -> FutureMessage:
        """R20/R19: the rejected record goes to the DLQ under its original key."""
        record = dead_letter(reject, topic, partition, offset, key, value)
        self.counts[DEAD_LETTER] += 1
        self.counts[f"dead_letter.{reject.reason}"] += 1
        return self.topics[DEAD_LETTER].send_soon(key=key, value=orjson.dumps(record))


async def delivered(futures: list, timeout: float = DELIVERY_TIMEOUT_S) -> None:
    """Wait until Kafka acknowledged every record (acks=all); raise DeliveryFailed."""
    if not futures:
        return
    try:
        await asyncio.wait_for(asyncio.gather(*futures), timeout)
    except asyncio.CancelledError:
        raise
    except Exception as err:
        raise DeliveryFailed(f"{len(futures)} records not delivered: {err!r}") from err
