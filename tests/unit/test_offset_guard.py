"""Each input record is applied once and in offset order, whatever Faust delivers
(``worker.offsets``)."""
from __future__ import annotations

from worker.offsets import APPLY, DROP, DROP_AND_SEEK, SKIP, OffsetGuard


def verdicts(guard: OffsetGuard, partition: int, offsets) -> list[int]:
    return [guard.verdict(partition, o) for o in offsets]


def test_unknown_partition_applies_from_wherever_it_starts():
    guard = OffsetGuard({})
    assert verdicts(guard, 0, [7, 8, 9]) == [APPLY] * 3
    assert guard.next_offset == {0: 10}


def test_records_below_the_restored_position_are_skipped():
    guard = OffsetGuard({0: 5})
    assert verdicts(guard, 0, [3, 4, 5, 6]) == [SKIP, SKIP, APPLY, APPLY]


def test_missing_records_are_read_again_before_anything_after_them_is_applied():
    """Faust lost 3..4: 5 and the rest of the stale stream are dropped, a seek back to
    3 is asked for once, and the re-read log is applied in order."""
    guard = OffsetGuard({0: 3})
    assert verdicts(guard, 0, [5, 6, 7]) == [DROP_AND_SEEK, DROP, DROP]
    assert verdicts(guard, 0, [3, 4, 5, 6, 7]) == [APPLY] * 5
    assert guard.next_offset == {0: 8} and not guard.resync


def test_a_real_gap_is_accepted_after_the_log_was_read_again():
    """Compacted or transactional logs have offsets with no record: reading again from
    the expected offset delivers the same first record again, which is then applied."""
    guard = OffsetGuard({0: 3})
    assert verdicts(guard, 0, [6, 7]) == [DROP_AND_SEEK, DROP]
    assert verdicts(guard, 0, [6, 7]) == [APPLY, APPLY]
    assert guard.next_offset == {0: 8}


def test_partitions_are_independent_and_a_rebalance_forgets_pending_seeks():
    guard = OffsetGuard({0: 3, 1: 10})
    assert guard.verdict(0, 9) == DROP_AND_SEEK
    assert guard.verdict(1, 10) == APPLY
    guard.reset()
    assert guard.verdict(0, 9) == DROP_AND_SEEK          # asks again after a rebalance
