"""The batch topics' records as aiokafka parsed them, without a ``ConsumerRecord`` each.

aiokafka turns every fetched record into a ``ConsumerRecord`` (a dataclass of eleven
fields, with the headers copied into a tuple) in ``PartitionRecords._consumer_record``:
~1.5 µs per record against ~0.5 µs for parsing it (measured with aiokafka 0.14's C
record reader, 300-byte values), in the consumer thread, which shares the GIL with the
batch loop. For the topics the batch loop takes (events and ticks,
``BatchingConsumer.hand_over``) the record object of aiokafka's own reader is handed
on as it is: it has ``offset``, ``timestamp``, ``key``, ``value`` and ``headers``; the
topic and partition travel with the fetch (``worker.fetches.Fetch``). Every other topic
(settings, changelogs) keeps aiokafka's ``ConsumerRecord``, which Faust reads.

Installed by replacing ``PartitionRecords`` in aiokafka's fetcher module (aiokafka is
pinned; ``tests/unit/test_raw_records.py`` checks the hook still exists and works).
"""
from __future__ import annotations

from typing import Iterable

from aiokafka.consumer import fetcher as _fetcher

_AIOKAFKA_PARTITION_RECORDS = _fetcher.PartitionRecords
RAW_TOPICS: set[str] = set()


class RawPartitionRecords(_AIOKAFKA_PARTITION_RECORDS):
    def __init__(self, tp, *args, **kwargs) -> None:
        super().__init__(tp, *args, **kwargs)
        if tp.topic in RAW_TOPICS:
            self._consumer_record = _as_parsed     # instance attribute: no lookup chain


def _as_parsed(tp, record):
    return record


def install(topics: Iterable[str]) -> None:
    """Records of ``topics`` are handed on as parsed, from the next fetch on."""
    RAW_TOPICS.update(topics)
    _fetcher.PartitionRecords = RawPartitionRecords
