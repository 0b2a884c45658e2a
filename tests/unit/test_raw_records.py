"""The batch topics' records reach the batch loop as aiokafka's reader parsed them
(``worker.raw_records``): same offsets, keys, values and timestamps as the
``ConsumerRecord`` aiokafka would have built, and every other topic keeps its
``ConsumerRecord``. Built on aiokafka's own record batch format (no broker)."""
from __future__ import annotations

from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord, TopicPartition

from worker import raw_records


def _records(n: int) -> MemoryRecords:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1,
                                        base_sequence=-1, batch_size=1 << 20)
    for i in range(n):
        builder.append(i, timestamp=1_700_000_000_000 + i, key=b"app:u%d" % i,
                       value=b'{"n":%d}' % i, headers=[])
    return MemoryRecords(bytes(builder.build()))


def _read(cls, topic: str, n: int = 5) -> list:
    parts = cls(TopicPartition(topic, 3), _records(n), [], 0, None, None, True,
                "read_uncommitted")
    return list(parts)


def test_aiokafka_still_builds_its_records_where_the_hook_replaces_them():
    assert hasattr(fetcher.PartitionRecords, "_consumer_record")
    assert issubclass(raw_records.RawPartitionRecords, raw_records._AIOKAFKA_PARTITION_RECORDS)


def test_batch_topic_records_are_handed_on_as_parsed_with_the_same_fields():
    raw_records.RAW_TOPICS.add("raw-events-test")
    try:
        raw = _read(raw_records.RawPartitionRecords, "raw-events-test")
        built = _read(raw_records._AIOKAFKA_PARTITION_RECORDS, "raw-events-test")
    finally:
        raw_records.RAW_TOPICS.discard("raw-events-test")
    assert not any(isinstance(r, ConsumerRecord) for r in raw)
    assert all(isinstance(r, ConsumerRecord) for r in built)
    assert [(r.offset, r.key, r.value, r.timestamp) for r in raw] == \
           [(r.offset, r.key, r.value, r.timestamp) for r in built]
    assert [r.offset for r in raw] == [0, 1, 2, 3, 4]


def test_other_topics_keep_aiokafkas_consumer_records():
    records = _read(raw_records.RawPartitionRecords, "session-settings-test", 2)
    assert all(isinstance(r, ConsumerRecord) for r in records)
    assert [(r.topic, r.partition, r.offset) for r in records] == \
           [("session-settings-test", 3, 0), ("session-settings-test", 3, 1)]


def test_install_replaces_the_fetchers_class_for_the_next_fetches():
    before = fetcher.PartitionRecords
    try:
        raw_records.install(["raw-install-test"])
        assert fetcher.PartitionRecords is raw_records.RawPartitionRecords
        assert "raw-install-test" in raw_records.RAW_TOPICS
    finally:
        fetcher.PartitionRecords = before
        raw_records.RAW_TOPICS.discard("raw-install-test")
