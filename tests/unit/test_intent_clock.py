"""R9 current intent, R10 the clock (watermark = stream time - lateness)."""
from __future__ import annotations

import pytest

from tests.builders import (CLOSED, HOUR, INACTIVITY, LATENESS, MIN, OPENED, SEC, T0, Until, ev,
                            only, run)
from worker.domain import CoreConfig

CONTINUE = {"app-1": {"mode": "continue_on_same_intent"}}
GAP = 20 * MIN


def _after_gap(first_events, message, settings=CONTINUE):
    """Run ``first_events`` then a user_message after the gap; return the close reason or None."""
    r = run(list(first_events) + [ev("user_message", T0 + GAP, **message)], settings=settings)
    return r.closed[0]["reason"] if r.closed else None


# --- R9 Current intent -------------------------------------------------------------------

def test_current_intent_is_last_non_null_user_message_intent_R9():
    first = [ev("user_message", T0, intent="A"), ev("user_message", T0 + 1, intent="B"),
             ev("user_message", T0 + 2, intent=None)]
    assert _after_gap(first, {"intent": "B"}) is None
    assert _after_gap(first, {"intent": "A"}) == "new_intent"


def test_on_connect_trigger_dialog_sets_current_intent_R9():
    first = [ev("on_connect", T0, action="trigger_dialog", intent="Greet")]
    assert _after_gap(first, {"intent": "Greet"}) is None
    assert _after_gap(first, {"intent": None}) is None          # valid input for the dialog


@pytest.mark.parametrize("action", ["run_script", "run_message"])
def test_on_connect_other_actions_do_not_set_current_intent_R9(action):
    first = [ev("on_connect", T0, action=action, intent="Greet")]
    assert _after_gap(first, {"intent": "Greet"}) == "new_intent"
    assert _after_gap(first, {"intent": None}) == "invalid_input"


def test_context_dialog_intent_becomes_current_intent_R9_R14():
    first = [ev("user_message", T0, intent="A"), ev("context", T0 + 1, dialog={"intent": "D"})]
    assert _after_gap(first, {"intent": "D"}) is None
    assert _after_gap(first, {"intent": "A"}) == "new_intent"


def test_context_dialog_null_clears_current_intent_R9_R14():
    first = [ev("user_message", T0, intent="A"), ev("context", T0 + 1, dialog=None)]
    assert _after_gap(first, {"intent": None}) == "invalid_input"
    assert _after_gap(first, {"intent": "A"}) == "new_intent"


def test_context_without_dialog_field_keeps_current_intent_R9_R14():
    first = [ev("user_message", T0, intent="A"), ev("context", T0 + 1, tags=["t"])]
    assert _after_gap(first, {"intent": "A"}) is None


@pytest.mark.parametrize("command", ["discard", "discard_all"])
def test_discard_commands_clear_current_intent_R9_R11_R12(command):
    first = [ev("user_message", T0, intent="A"), ev(command, T0 + 1)]
    assert _after_gap(first, {"intent": None}) == "invalid_input"
    assert _after_gap(first, {"intent": "A"}) == "new_intent"


def test_cleared_dialog_true_when_session_had_only_a_current_intent_R9_R15():
    r = run([ev("user_message", T0, intent="A")], until=T0 + HOUR)
    assert only(r.closed)["cleared"]["dialog"] is True


def test_cleared_dialog_true_when_session_had_dialog_context_R9_R15():
    r = run([ev("on_connect", T0), ev("context", T0 + 1, dialog={"step": 1})], until=T0 + HOUR)
    assert only(r.closed)["cleared"]["dialog"] is True


def test_cleared_dialog_false_without_intent_or_dialog_R9_R15():
    r = run([ev("user_message", T0), ev("user_message", T0 + 1, intent="A"), ev("discard", T0 + 2)],
            until=T0 + HOUR)
    assert only(r.closed)["cleared"]["dialog"] is False


# --- R10 Clock ---------------------------------------------------------------------------

def test_clock_is_stream_time_minus_lateness_R10():
    r = run([ev("user_message", T0, key="app-1:a")])
    r.feed(ev("user_message", T0 + INACTIVITY + LATENESS - 1, key="app-1:b"))
    assert r.part.clock() == [T0 + INACTIVITY + LATENESS - 1, T0 + INACTIVITY - 1]
    assert r.closed == []
    r.feed(ev("agent_message", T0 + INACTIVITY + LATENESS, key="app-1:b"))
    assert r.part.clock() == [T0 + INACTIVITY + LATENESS, T0 + INACTIVITY]
    assert [c["app_id"] + ":" + c["user_id"] for c in r.closed] == ["app-1:a"]


def test_lagging_record_within_lateness_does_not_close_early_R10():
    # b's record runs ahead of a's next event by less than the allowed lateness
    r = run([ev("user_message", T0, key="app-1:a"),
             ev("user_message", T0 + INACTIVITY + SEC, key="app-1:b"),
             ev("user_message", T0 + INACTIVITY - SEC, key="app-1:a")])
    assert r.closed == []
    r.feed(Until(T0 + 2 * INACTIVITY))
    closed_a = [c for c in r.closed if c["user_id"] == "a"]
    assert only(closed_a)["closed_at"] == T0 + 2 * INACTIVITY - SEC
    assert only(closed_a)["user_events"] == 2


def test_watermark_never_moves_backwards_R10():
    r = run([Until(T0 + HOUR)])
    assert r.part.clock()[1] == T0 + HOUR
    r.feed(ev("user_message", T0 + MIN, key="app-1:x"), Until(T0))
    assert r.part.clock()[1] == T0 + HOUR
    r.part.restore_clock([T0, T0])
    assert r.part.clock()[1] == T0 + HOUR


def test_stream_time_never_moves_backwards_R10():
    r = run([ev("user_message", T0 + HOUR, key="app-1:a"), ev("user_message", T0, key="app-1:b")])
    assert r.part.clock() == [T0 + HOUR, T0 + HOUR - LATENESS]


def test_late_event_into_an_already_due_session_closes_at_once_R10():
    # the clock is far ahead; a late event opens a session whose deadline has passed
    r = run([Until(T0 + HOUR)])
    out = r.feed(ev("user_message", T0, event_id="late"))
    assert [t for t, _, _ in out] == [OPENED, CLOSED]
    assert out[1][2]["closed_at"] == T0 + INACTIVITY
    assert out[1][2]["reason"] == "inactivity"


def test_late_event_extending_a_session_not_yet_due_R10():
    r = run([ev("user_message", T0, key="app-1:a"),
             ev("user_message", T0 + 10 * MIN, key="app-1:b"),
             ev("user_message", T0 + 5 * MIN, key="app-1:a")], until=T0 + 20 * MIN - 1)
    assert r.closed == []
    r.feed(Until(T0 + 20 * MIN))
    assert [(c["user_id"], c["closed_at"]) for c in r.closed] == [("a", T0 + 20 * MIN)]


def test_record_first_advances_clock_then_is_applied_R10():
    r = run([ev("user_message", T0, key="app-1:a"), ev("user_message", T0, key="app-1:b"),
             ev("user_message", T0 + HOUR, key="app-1:c")])
    assert [(t, k) for t, k, _ in r.outs][2:] == [
        (CLOSED, "app-1:a"), (CLOSED, "app-1:b"), (OPENED, "app-1:c")]


def test_clock_closes_due_sessions_in_deadline_order_R10():
    r = run([ev("user_message", T0 + 2 * MIN, key="app-1:late"),
             ev("user_message", T0, key="app-1:early")], until=T0 + HOUR)
    assert [c["user_id"] for c in r.closed] == ["early", "late"]


def test_allowed_lateness_is_a_worker_setting_R10():
    r = run([ev("user_message", T0, key="app-1:a"),
             ev("user_message", T0 + INACTIVITY, key="app-1:b")], cfg=CoreConfig(lateness_ms=0))
    assert [c["user_id"] for c in r.closed] == ["a"]
    r = run([ev("user_message", T0, key="app-1:a"),
             ev("user_message", T0 + INACTIVITY + 5 * SEC, key="app-1:b")],
            cfg=CoreConfig(lateness_ms=10 * SEC))
    assert r.closed == []


def test_idle_partition_closes_on_time_by_advancing_clock_R10():
    r = run([ev("user_message", T0)])
    assert r.feed(Until(T0 + INACTIVITY - 1)) == []
    out = r.feed(Until(T0 + INACTIVITY + 1))
    assert [t for t, _, _ in out] == [CLOSED]
