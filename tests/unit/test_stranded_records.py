"""Records fetched for a partition that was paused by the time the fetch came back are
not delivered (as in Faust's ``getmany``), yet the consumer's position has moved past
them. ``BatchingConsumer.seek_back_stranded`` moves the partition back to its first
undelivered record, so that they are read again once it resumes: a settings dead letter
(R19, R20) was once published only minutes later, at the next rebalance
(docs/live-worker.md, Known limits). Never forward, never during a rebalance."""
from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

from faust.types import TP

from worker.batching_consumer import BatchingConsumer

SETTINGS_7 = TP("session-settings", 7)


class FakeConsumer:
    """The attributes of Faust's consumer that the seeks back use."""

    def __init__(self, position: int | None, read_offset: int | None = None,
                 generation: int = 3, fail: bool = False) -> None:
        self.app = SimpleNamespace(consumer_generation_id=generation)
        self.positions = {SETTINGS_7: position}
        self._thread = SimpleNamespace(position_now=self.positions.get)
        self._read_offset = {SETTINGS_7: read_offset} if read_offset is not None else {}
        self._stranded: dict = {}
        self.sought: list[tuple[TP, int]] = []
        self.stranded_seeks = 0
        self.fail = fail
        self.log = logging.getLogger("test")

    async def seek(self, tp, offset) -> None:
        if self.fail:
            raise RuntimeError("partition not assigned")
        self.sought.append((tp, offset))
        self.positions[tp] = offset

    def _is_changelog_tp(self, tp) -> bool:
        return tp.topic.endswith("-changelog")

    _strand = BatchingConsumer._strand
    _seek_back = BatchingConsumer._seek_back


def seek_back(consumer, stranded, generation: int = 3) -> None:
    for tp, offset in stranded.items():
        consumer._strand(tp, offset)
    asyncio.run(BatchingConsumer.seek_back_stranded(consumer, generation))


def test_records_fetched_while_paused_are_read_again_from_the_first_of_them_R19():
    consumer = FakeConsumer(position=12, read_offset=9)     # delivered up to 9, fetched 10, 11
    seek_back(consumer, {SETTINGS_7: 10})
    assert consumer.sought == [(SETTINGS_7, 10)]
    assert consumer.positions[SETTINGS_7] == 10
    assert consumer.stranded_seeks == 1 and consumer._stranded == {}


def test_a_partition_never_read_before_is_sought_back_too_R19():
    consumer = FakeConsumer(position=2, read_offset=None)   # no commit yet, nothing delivered
    seek_back(consumer, {SETTINGS_7: 0})
    assert consumer.sought == [(SETTINGS_7, 0)]


def test_a_partition_already_sought_back_to_or_before_them_is_left_alone():
    # a seek after the fetch (Faust's after recovery) moved the position back already:
    # seeking to the undelivered records would skip what lies before them
    for position in (10, 4):
        consumer = FakeConsumer(position=position, read_offset=None)
        seek_back(consumer, {SETTINGS_7: 10})
        assert consumer.sought == [] and consumer.stranded_seeks == 0


def test_records_read_before_a_seek_are_not_stranded():
    consumer = FakeConsumer(position=30, read_offset=20)    # sought to 20 since the fetch
    seek_back(consumer, {SETTINGS_7: 15})
    assert consumer.sought == []


def test_an_unknown_position_is_looked_at_again_later():
    consumer = FakeConsumer(position=None)
    seek_back(consumer, {SETTINGS_7: 10})
    assert consumer.sought == [] and consumer._stranded == {SETTINGS_7: 10}


def test_nothing_is_sought_once_a_rebalance_began_the_seek_after_it_does():
    consumer = FakeConsumer(position=12, generation=4)
    seek_back(consumer, {SETTINGS_7: 10}, generation=3)
    assert consumer.sought == [] and consumer._stranded == {SETTINGS_7: 10}


def test_a_failed_seek_of_a_revoked_partition_does_not_stop_the_fetch_loop():
    consumer = FakeConsumer(position=12, fail=True)
    seek_back(consumer, {SETTINGS_7: 10})
    assert consumer.sought == [] and consumer.stranded_seeks == 0


# -- after a rebalance: partitions never committed ------------------------------------------
def test_after_a_rebalance_never_committed_partitions_are_read_again_R19():
    """aiokafka's seek_to_committed leaves a partition without a committed offset (or
    committed at 0) where the fetcher got to: records Faust dropped as the rebalance
    began (fetched for paused partitions, or waiting in an agent's buffer) were never
    read again. A settings partition (an agent's topic) is read again from the
    beginning; an events partition from the first record dropped on it (the state
    skips what it applied). Changelogs and committed partitions are left to Faust."""
    consumer = FakeConsumer(position=12)
    consumer.batch_topics = frozenset({"conversation-events"})
    consumer.uncommitted_rereads = 0
    settings_2, settings_5 = TP("session-settings", 2), TP("session-settings", 5)
    events_3 = TP("conversation-events", 3)
    events_4 = TP("conversation-events", 4)
    events_6 = TP("conversation-events", 6)
    changelog_3 = TP("app-sessions-changelog", 3)
    consumer.positions.update({events_3: 50, events_4: 130, events_6: 70, changelog_3: 9,
                               settings_2: 3, settings_5: 0})
    for tp, first in ((SETTINGS_7, 10), (events_3, 40), (events_4, 125), (changelog_3, 5)):
        consumer._strand(tp, first)
    consumer._strand(events_3, 41)                   # the first dropped record counts
    committed = {SETTINGS_7: None, settings_2: None, settings_5: None,
                 TP("session-settings", 6): None,    # position being reset: left alone
                 events_3: 0, events_4: 120, events_6: None, changelog_3: None}
    asyncio.run(BatchingConsumer.seek_uncommitted(consumer, committed))
    assert consumer.sought == [(SETTINGS_7, 0), (settings_2, 0), (events_3, 40)]
    assert consumer.uncommitted_rereads == 2
    assert consumer._stranded == {}                   # aiokafka sought the committed ones
