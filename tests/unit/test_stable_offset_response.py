"""Reading an ``OffsetFetch`` v7 answer (``worker.stable_offsets``): an unstable
partition makes the whole fetch retriable, partitions without a committed offset are
left out, as in aiokafka's own v3 parser. The broker side is in
``tests/integration/test_stable_offsets.py``."""
from __future__ import annotations

import pytest
from aiokafka import errors as Errors
from aiokafka.structs import TopicPartition

from worker.stable_offsets import (OffsetFetchResponse_v7, UnstableOffsetCommitError,
                                   parse_stable_offsets)


def _response(partitions, error_code: int = 0) -> OffsetFetchResponse_v7:
    raw = OffsetFetchResponse_v7(0, [("settings", partitions, {})], error_code, {})
    return OffsetFetchResponse_v7.decode(raw.encode())       # through the wire format


def test_committed_offsets_are_read_and_partitions_without_one_left_out():
    offsets = parse_stable_offsets(_response([(0, 12, -1, "", 0, {}),
                                              (1, -1, -1, None, 0, {})]))
    assert {tp: o.offset for tp, o in offsets.items()} == {TopicPartition("settings", 0): 12}


def test_an_unstable_partition_makes_the_fetch_retriable():
    with pytest.raises(UnstableOffsetCommitError) as err:
        parse_stable_offsets(_response([(0, 12, -1, "", 0, {}), (1, 3, -1, "", 88, {})]))
    assert err.value.retriable


def test_a_coordinator_error_is_raised_for_aiokafka_to_handle():
    with pytest.raises(Errors.NotCoordinatorForGroupError):
        parse_stable_offsets(_response([], error_code=16))
