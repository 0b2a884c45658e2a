"""Crash recovery on the real broker: two workers of one group consume a 20,000-event
log (8 partitions, produced before they start) while one of them is SIGKILLed three
times and SIGTERMed once, each time restarted at once. Compared with ``replay`` per
input partition (``tests/chaos/chaos.py``): nothing lost, nothing changed, and every
re-published output is an identical copy (at-least-once, README "Guarantees"). With
PROCESSING_GUARANTEE=exactly_once, nothing is re-published either (read_committed)."""
from __future__ import annotations

import asyncio

import pytest

from tests.chaos.chaos import run_chaos, table

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# Unthrottled, two workers read the 20,000 records in about a second, before the first
# fault fires; 20 records per fetch makes the consumption last long enough for the
# faults to land during it (the report's "during_consumption"; with 30, 3 of 4 faults
# of a CI run landed after it).
MAX_POLL_RECORDS = 20


def _crash_run(tmp_path, seed: int, guarantee: str) -> tuple[dict, str]:
    """The crash run, its common checks (4 faults, at least 2 while the log is being
    consumed, both workers exit 0 at the end); returns the totals and a failure detail."""
    report = asyncio.run(run_chaos(events=20_000, users=2_000, kills=3, terms=1, workers=2,
                                   partitions=8, seed=seed, session_timeout=6.0,
                                   log_dir=tmp_path, write=tmp_path / "chaos.json",
                                   guarantee=guarantee, max_poll_records=MAX_POLL_RECORDS))
    print(table(report))
    print(report["run"])
    faults = report["run"]["faults"]
    assert len(faults) == 4
    assert sum(f["during_consumption"] for f in faults) >= 2, \
        f"faults landed after the consumption: {report['run']}"
    assert report["run"]["final_exit_codes"] == [0, 0]
    return report["totals"], f"\n{table(report)}\n{report.get('examples')}\nlogs: {tmp_path}"


def test_kills_and_restarts_lose_nothing_and_duplicates_are_identical(kafka, tmp_path):
    t, detail = _crash_run(tmp_path, seed=11, guarantee="at_least_once")
    assert t["lost"] == 0, detail
    assert t["mismatched"] == 0 and t["unexpected"] == 0, detail
    assert t["non_identical_duplicates"] == 0 and t["all_duplicates_identical"], detail
    assert t["order_errors"] == 0, detail


def test_kills_and_restarts_lose_and_repeat_nothing_exactly_once(kafka, tmp_path):
    t, detail = _crash_run(tmp_path, seed=12, guarantee="exactly_once")
    assert t["lost"] == 0 and t["duplicated"] == 0, detail
    assert t["mismatched"] == 0 and t["unexpected"] == 0, detail
    assert t["order_errors"] == 0, detail
