"""Every app's settings, read from the whole compacted ``session-settings`` topic.

``session-settings`` is keyed by app_id and not co-partitioned with the events, so each
worker needs all of it. A group-less aiokafka consumer assigned to every partition reads
it from the beginning:

- ``load()`` runs before Faust starts and reads up to the end offsets taken at start-up,
  straight into the shared ``SettingsBook``: settings published before the worker
  started therefore apply to every event it consumes (nothing is processed before).
- ``tail()`` then follows the topic for the worker's lifetime. A later change is only
  queued; the events agent ``drain()``s the queue at the start of each batch, puts it in
  the book and calls ``on_settings_changed`` on every local partition, so deadlines move
  inside the stream, where their outputs and state writes belong (R19).

Invalid records keep the app's previous settings (R19) and are only counted here; their
dead letters are published once per consumer group by the ``settings-dlq`` agent (see
``worker.app``), not once per worker and restart.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter

from aiokafka import AIOKafkaConsumer, TopicPartition

from . import metrics
from .codec import Reject, decode_settings
from .domain import AppSettings, CoreConfig, SettingsBook

log = logging.getLogger(__name__)


class SettingsFeed:
    def __init__(self, kafka_kwargs: dict, topic: str, partitions: int, cfg: CoreConfig,
                 book: SettingsBook, max_bytes: int) -> None:
        self.kafka_kwargs = kafka_kwargs
        self.topic = topic
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.cfg = cfg
        self.book = book
        self.max_bytes = max_bytes
        self.pending: dict[str, AppSettings | None] = {}
        self.counts: Counter[str] = Counter()
        self._consumer: AIOKafkaConsumer | None = None

    def _decode(self, record) -> tuple[str, AppSettings | None] | None:
        decoded = decode_settings(record.key, record.value, self.cfg, self.book.default,
                                  self.max_bytes)
        if type(decoded) is Reject:
            self.counts["rejected"] += 1
            log.warning("settings record %d/%d rejected (the app keeps its settings): %s",
                        record.partition, record.offset, decoded.detail)
            return None
        self.counts["applied"] += 1
        metrics.settings_applied.inc()
        return decoded

    async def load(self, timeout_s: float = 120.0) -> int:
        """Read every settings record published so far into the book."""
        consumer = self._consumer = AIOKafkaConsumer(
            **self.kafka_kwargs, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", isolation_level="read_committed")
        await consumer.start()
        consumer.assign(self.tps)
        end = await consumer.end_offsets(self.tps)
        await consumer.seek_to_beginning(*self.tps)
        loaded = 0
        deadline = asyncio.get_running_loop().time() + timeout_s
        while await self._behind(consumer, end):
            if asyncio.get_running_loop().time() > deadline:
                raise SystemExit(f"settings topic {self.topic} not loaded in {timeout_s} s")
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    decoded = self._decode(record)
                    if decoded is not None:
                        self.book.put(*decoded)
                        loaded += 1
        log.info("settings loaded: %d records, %d apps with settings",
                 loaded, len(self.book.apps()))
        return loaded

    @staticmethod
    async def _behind(consumer: AIOKafkaConsumer, end: dict) -> bool:
        for tp, offset in end.items():
            if await consumer.position(tp) < offset:
                return True
        return False

    async def tail(self) -> None:
        """Follow the topic; queue changes for the agent (see ``drain``)."""
        consumer = self._consumer
        assert consumer is not None, "load() first"
        try:
            while True:
                try:
                    batches = await consumer.getmany(timeout_ms=1000)
                except asyncio.CancelledError:
                    raise
                except Exception as err:     # keep following; the consumer reconnects
                    log.warning("settings feed: %r; retrying in 1 s", err)
                    await asyncio.sleep(1.0)
                    continue
                for records in batches.values():
                    for record in records:
                        decoded = self._decode(record)
                        if decoded is not None:
                            app_id, settings = decoded
                            self.pending.pop(app_id, None)   # keep arrival order
                            self.pending[app_id] = settings
        finally:
            await self.close()

    def has_pending(self) -> bool:
        return bool(self.pending)

    def drain(self) -> list[tuple[str, AppSettings | None]]:
        """Changes since the last call, at most one (the latest) per app."""
        changes = list(self.pending.items())
        self.pending.clear()
        return changes

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
