"""Property tests over random event logs (R1, R2, R5, R6, R10, R17, R21–R24).

Example counts are small by default (the whole file runs in seconds);
``HYPOTHESIS_PROFILE=nightly`` (x25) or ``HYPOTHESIS_MAX_EXAMPLES=N`` runs deeper.
"""
from __future__ import annotations

import orjson
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tests.builders import MIN, T0
from tests.property.strategies import (EVENTS, Log, book_from_json, book_to_json, check_stream,
                                       encode, event_record, examples, feed, logs, new_replayer,
                                       per_key, replay, settings_record)
from worker.domain import CoreConfig
from worker.domain import DEAD_LETTER
from worker.domain.state import from_wire, to_wire

COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(max_examples=examples(120), **COMMON)
@given(logs())
def test_stream_invariants_hold_for_any_log_R1_R2_R5_R17_R23_R24(log):
    """At most one open session per key; every close follows its open (same session_id)
    and closes it once; at most one upgrade, after the open, of a non-interactive session;
    billable == interactive and not developer; billing blocks; notification right before
    its close; closed -> opened -> upgraded order; every record valid for its schema."""
    outs = replay(log)
    check_stream(outs, log.cfg, log)


@settings(max_examples=examples(60), **COMMON)
@given(logs())
def test_same_log_twice_gives_byte_identical_outputs_R22(log):
    assert encode(replay(log)) == encode(replay(log))


@settings(max_examples=examples(100), **COMMON)
@given(logs(retries=False), st.data())
def test_exact_duplicates_right_after_the_original_change_nothing_R21(log, data):
    """Duplicates (same bytes) inserted right after valid events change no output."""
    valid = [i for i, r in enumerate(log.records) if r.valid]
    assume(valid)
    chosen = set(data.draw(st.lists(st.sampled_from(valid), min_size=1, unique=True), label="dups"))
    with_dups = []
    for i, rec in enumerate(log.records):
        with_dups.append(rec)
        if i in chosen:
            with_dups += [rec] * data.draw(st.integers(1, 2), label=f"copies of {i}")
    plain, dup = replay(log), replay(log, records=with_dups)
    strip = lambda outs: [(t, k, v) for t, k, v in outs if t != DEAD_LETTER]   # noqa: E731
    assert encode(strip(dup)) == encode(strip(plain))
    # dead letters only shift their offsets
    assert [v["reason"] for t, _, v in dup if t == DEAD_LETTER] == \
        [v["reason"] for t, _, v in plain if t == DEAD_LETTER]


@settings(max_examples=examples(150), **COMMON)
@given(logs(), st.data())
def test_restart_from_serialised_state_gives_identical_outputs_R22(log, data):
    """Cut the log anywhere, serialise every key state + clock + settings book with orjson,
    rebuild a fresh PartitionSessions with load()/restore_clock() and continue."""
    cut = data.draw(st.integers(0, len(log.records)), label="cut")
    uninterrupted = replay(log)

    rp = new_replayer(log.cfg)
    before = feed(rp, log.records[:cut])
    snapshot = orjson.dumps({
        "states": {key: to_wire(state) for key, state in rp.part.states.items()},
        "clock": rp.part.clock(),
        "book": book_to_json(rp.book),
        "offset": rp.offset,
    })
    del rp

    saved = orjson.loads(snapshot)
    rp2 = new_replayer(log.cfg, book=book_from_json(saved["book"]))
    for key, wire in saved["states"].items():
        rp2.part.load(key, from_wire(wire))
    rp2.part.restore_clock(saved["clock"])
    rp2.offset = saved["offset"]
    after = feed(rp2, log.records[cut:])
    if log.until is not None:
        after += rp2.until(log.until)
    assert encode(before + after) == encode(uninterrupted)


@settings(max_examples=examples(100), **COMMON)
@given(logs(bad=False), st.data())
def test_clock_ticks_do_not_change_what_is_emitted_R6_R10_R22(log, data):
    """A clock tick (the wall-clock part of the watermark, while caught up) that no later
    record could contradict — at most every later event's ts minus the lateness, after the
    last settings change — changes when outputs are emitted, never what (per key)."""
    records = log.records
    last_settings = max([i for i, r in enumerate(records) if r.topic != EVENTS], default=-1)
    pos = data.draw(st.integers(last_settings + 1, len(records)), label="tick position")
    later = [r.ts for r in records[pos:] if r.valid]
    if later:
        limit = min(later) - log.cfg.lateness_ms
    elif log.until is not None:
        limit = log.until
    else:
        limit = max([r.ts for r in records if r.valid], default=0) - log.cfg.lateness_ms
    tick = data.draw(st.integers(limit - 3 * 3_600_000, limit), label="tick")
    ticked = records[:pos] + [tick] + records[pos:]
    assert per_key(replay(log, records=ticked)) == per_key(replay(log))


@settings(max_examples=examples(100), **COMMON)
@given(logs())
def test_fast_path_gives_same_outputs_as_full_rules_R3_R22(log):
    assert encode(replay(log, fast_path=True)) == encode(replay(log, fast_path=False))


# the smallest such log, pinned: retention 14 min < inactivity 15 min, continue mode, the
# second message arrives exactly at activity + retention (the clock is 2 s behind)
SHORT_RETENTION_EXAMPLE = Log(CoreConfig(retention_ms=14 * MIN), [
    settings_record(mode="continue_on_same_intent"),
    event_record("user_message", T0, event_id="e1", intent="A"),
    event_record("user_message", T0 + 14 * MIN, event_id="e2", intent="A")], None)


@settings(max_examples=examples(50), **COMMON)
@given(logs(short_retention=True))
@example(SHORT_RETENTION_EXAMPLE)
def test_fast_path_matches_rules_when_retention_is_shorter_than_inactivity_R18(log):
    """Same as above with a worker retention (14/16 min) shorter than some app inactivity
    (30 min). Regression: ``rules.fast_activity`` used to skip the R18 expiry check
    there (found by this suite, fixed in 837550d)."""
    assert encode(replay(log, fast_path=True)) == encode(replay(log, fast_path=False))


@settings(max_examples=examples(60), **COMMON)
@given(logs(short_retention=True))
def test_stream_invariants_hold_with_short_retention_R18(log):
    check_stream(replay(log, fast_path=False), log.cfg, log)


def _model_outputs(log):
    from tests.property.model import Model
    from tests.property.strategies import NOW
    m = Model(log.cfg, NOW)
    for rec in log.records:
        m.record(rec.topic, rec.key, rec.value)
    if log.until is not None:
        m.until(log.until)
    return m.out


@settings(max_examples=examples(120), **COMMON)
@given(logs())
def test_core_matches_an_independent_reference_model_R1_to_R25(log):
    """Per key, the core's outputs equal those of tests/property/model.py, a plain model
    written from SEMANTICS.md (no deadline index, no fast path)."""
    assert per_key(replay(log)) == _model_outputs(log)


@settings(max_examples=examples(60), **COMMON)
@given(logs(short_retention=True))
def test_core_matches_reference_model_with_short_retention_R18(log):
    assert per_key(replay(log)) == _model_outputs(log)
