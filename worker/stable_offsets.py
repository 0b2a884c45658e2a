"""Stable committed offsets (KIP-447) for the exactly-once consumer.

With exactly-once, a batch's input offsets are committed *inside* its transaction
(``send_offsets_to_transaction``). The group coordinator holds them as pending until the
transaction's marker reaches ``__consumer_offsets``, which happens a few milliseconds
after ``commit_transaction`` returned. An ``OffsetFetch`` in that window, by the next
owner of a partition after a rebalance, returns the *previous* committed offset: the
records of the transaction just committed are then read and published again, or, on a
partition with nothing committed before, not sought at all (probably how two CI runs
lost a settings dead letter: the record had been fetched, then dropped with Faust's
agent buffers at the rebalance, and never read again).

The Java consumer closes that window with ``OffsetFetch`` v7's ``require_stable``: the
broker answers ``UNSTABLE_OFFSET_COMMIT`` (a retriable error) while a transactional
commit is pending for a partition, and the consumer asks again. aiokafka 0.14 only
speaks ``OffsetFetch`` v0–v3. This module adds v7 and, for the consumers marked with
``require_stable_offsets``, routes aiokafka's one committed-offset fetch
(``GroupCoordinator._do_fetch_commit_offsets``: the positions of a new assignment,
``committed()``, ``seek_to_committed()``) through it; the retry loop around it
(``fetch_committed_offsets``) is aiokafka's own.
"""
from __future__ import annotations

import logging
import time

from aiokafka import errors as Errors
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (Boolean, CompactArray, CompactString, Int16, Int32,
                                     Int64, Schema, TaggedFields)
from aiokafka.structs import OffsetAndMetadata, TopicPartition

log = logging.getLogger(__name__)

UNSTABLE_OFFSET_COMMIT = 88
_FLAG = "_require_stable_offsets"
LOG_EVERY_S = 5.0
_last_logged = float("-inf")


class UnstableOffsetCommitError(Errors.KafkaError):
    """A transaction committing offsets of the partition is still being completed."""
    errno = UNSTABLE_OFFSET_COMMIT
    retriable = True


class OffsetFetchResponse_v7(Response):
    API_KEY = 9
    API_VERSION = 7
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partitions", CompactArray(
                ("partition_index", Int32),
                ("committed_offset", Int64),
                ("committed_leader_epoch", Int32),
                ("metadata", CompactString("utf-8")),
                ("error_code", Int16),
                ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("error_code", Int16),
        ("tags", TaggedFields),
    )


class OffsetFetchRequest_v7(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 9
    API_VERSION = 7
    RESPONSE_TYPE = OffsetFetchResponse_v7
    SCHEMA = Schema(
        ("group_id", CompactString("utf-8")),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partition_indexes", CompactArray(Int32)),
            ("tags", TaggedFields))),
        ("require_stable", Boolean),
        ("tags", TaggedFields),
    )


class StableOffsetFetchRequest(Request[OffsetFetchRequest_v7]):
    """``OffsetFetch`` v7 with ``require_stable``; a broker without v7 fails the call
    (``NotImplementedError`` from aiokafka's version choice) instead of silently
    answering unstable offsets."""
    API_KEY = 9

    def __init__(self, group_id: str, partitions: list[tuple[str, list[int]]]) -> None:
        self.group_id = group_id
        self.partitions = partitions

    def build(self, request_struct_class: type[OffsetFetchRequest_v7]) -> OffsetFetchRequest_v7:
        return request_struct_class(
            self.group_id, [(topic, parts, {}) for topic, parts in self.partitions], True, {})


def parse_stable_offsets(response: OffsetFetchResponse_v7) -> dict[TopicPartition,
                                                                   OffsetAndMetadata]:
    """The committed offsets of a v7 response (partitions without one left out). Raises
    the retriable ``UnstableOffsetCommitError`` when any partition is unstable, and as
    aiokafka's v3 parser for the other errors."""
    _raise_for(response.error_code, None)
    offsets: dict[TopicPartition, OffsetAndMetadata] = {}
    for topic, partitions, _ in response.topics:
        for partition, offset, _epoch, metadata, error_code, _ in partitions:
            tp = TopicPartition(topic, partition)
            if error_code == Errors.UnknownTopicOrPartitionError.errno:
                log.warning("OffsetFetch: unknown topic %s", topic)
                continue
            _raise_for(error_code, tp)
            if offset >= 0:
                offsets[tp] = OffsetAndMetadata(offset, metadata or "")
    return offsets


def _raise_for(error_code: int, tp: TopicPartition | None) -> None:
    if error_code == 0:
        return
    if error_code == UNSTABLE_OFFSET_COMMIT:
        raise UnstableOffsetCommitError(f"offsets of {tp} not stable yet")
    error_type = Errors.for_code(error_code)
    if error_type in (Errors.GroupLoadInProgressError, Errors.NotCoordinatorForGroupError,
                      Errors.GroupCoordinatorNotAvailableError,
                      Errors.GroupAuthorizationFailedError):
        raise error_type()
    raise Errors.KafkaError(f"OffsetFetch error for {tp}: {error_type.__name__}")


_original_fetch = GroupCoordinator._do_fetch_commit_offsets


async def _do_fetch_commit_offsets(self: GroupCoordinator, partitions):
    if not getattr(self._client, _FLAG, False):
        return await _original_fetch(self, partitions)
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    response = await self._send_req(StableOffsetFetchRequest(self.group_id,
                                                             list(by_topic.items())))
    try:
        return parse_stable_offsets(response)
    except (Errors.NotCoordinatorForGroupError, Errors.GroupCoordinatorNotAvailableError):
        self.coordinator_dead()
        raise
    except UnstableOffsetCommitError:
        global _last_logged
        now = time.monotonic()
        if now - _last_logged >= LOG_EVERY_S:     # asked again every retry_backoff_ms
            _last_logged = now
            log.info("committed offsets of %d partitions not stable yet (a transaction "
                     "is being completed); asking again", len(partitions))
        raise


def require_stable_offsets(consumer) -> None:
    """Make ``consumer`` (an ``AIOKafkaConsumer``, before ``start()``) fetch committed
    offsets with ``require_stable``. Other consumers of the process are unchanged."""
    setattr(consumer._client, _FLAG, True)
    GroupCoordinator._do_fetch_commit_offsets = _do_fetch_commit_offsets
