"""`make bench`'s table (bench/run_bench.py): a figure is called met only when the run
measured it at the scale the floor names, and a reading that cannot be a measurement is
not shown as one."""
from __future__ import annotations

from bench.run_bench import build_table


def _state(store: str, open_: int, rss_mb: list[int], recovered: int, restart_s: float) -> dict:
    steps = [{"open": open_ * (k + 1) // 4, "rss_bytes": mb * 1_000_000}
             for k, mb in enumerate(rss_mb)]
    return {"store": store, "open_sessions": open_, "steps": steps,
            "bytes_per_open_session": 400, "bytes_per_open_session_delta": 560,
            "close": {"p99_s": 0.6, "closes": 39_000},
            "recovery": {"probe_opened_s": restart_s, "s_per_1m": restart_s,
                         "sessions": recovered, "membership": "static"}}


def _rows(res: dict) -> dict[str, dict]:
    """The table's rows by figure, cut at the first comma: "cold recovery (memory"."""
    return {r["figure"].split(",")[0]: r for r in build_table(res)[1]}


def test_both_stores_get_rows_and_only_the_memory_store_is_held_to_the_floors():
    res = {"states": {
        "memory://": _state("memory://", 1_091_187, [400, 520, 610, 700], 1_047_901, 17.05),
        "rocksdb://": _state("rocksdb://", 1_079_283, [500, 700, 900, 1100], 1_035_252, 10.28)}}
    res["states"]["rocksdb://"]["bytes_per_open_session"] = 693
    rows = _rows(res)
    assert rows["RSS per open session (memory"]["met"] == "met"
    assert rows["RSS per open session (rocksdb"]["met"] == "—"          # info, not a pass
    assert "memory store's" in rows["RSS per open session (rocksdb"]["floor"]
    assert rows["cold recovery (memory"]["met"] == "met"
    assert rows["warm restart"]["floor"] == "(info)"
    assert rows["close lateness p99 (memory"]["met"] == "met"
    assert rows["close lateness p99 (rocksdb"]["met"] == "met"


def test_an_rss_slope_whose_readings_fell_is_not_shown_as_met():
    """The 04:18 run printed "43 B, met" from readings of 246, 272, 285 and 248 MB: the
    last came after memory went back to the system, so the slope measured nothing."""
    res = {"states": {"memory://": _state("memory://", 199_041, [246, 272, 285, 248],
                                          191_644, 4.57)}}
    res["states"]["memory://"]["bytes_per_open_session"] = 43
    row = _rows(res)["RSS per open session (memory"]
    assert row["met"].startswith("not shown (RSS fell between readings: 246, 272, 285, 248")


def test_figures_below_1m_are_not_proven_even_under_the_floor():
    res = {"states": {"memory://": _state("memory://", 199_041, [246, 272, 285, 300],
                                          191_644, 4.57)}}
    rows = _rows(res)
    assert rows["close lateness p99 (memory"]["met"].startswith("not proven")
    assert rows["cold recovery (memory"]["met"].startswith("not proven")
