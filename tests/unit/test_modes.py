"""R6–R8: what happens after inactivity in each mode."""
from __future__ import annotations

import pytest

from tests.builders import (CLOSED, DAY, INACTIVITY, KEY, LATENESS, MIN, NOTIFICATION, OPENED,
                            SEC, T0, UPGRADED, Until, ev, only, run)

CONTINUE = {"mode": "continue_on_same_intent"}
LEGACY = {"mode": "legacy"}
GAP = 20 * MIN      # more than the default 15-minute inactivity


# --- R6 proactive ------------------------------------------------------------------------

def test_proactive_closes_by_clock_at_deadline_with_exact_record_R6():
    r = run([ev("user_message", T0, channel="web", intent="A"),
             ev("agent_message", T0 + MIN)], until=T0 + INACTIVITY)
    sid = r.opened[0]["session_id"]
    assert r.topics == [OPENED, CLOSED]
    assert only(r.closed) == {
        "schema": "session-closed/1", "session_id": sid, "app_id": "app-1", "user_id": "u-1",
        "opened_at": T0, "closed_at": T0 + INACTIVITY, "last_activity_at": T0,
        "reason": "inactivity", "interactive": True, "developer": False, "billable": True,
        "channel": "web", "user_events": 1, "agent_events": 1,
        "cleared": {"variables": [], "auth_profiles": [], "dialog": True},
        "notified": False, "billing_blocks": 1}
    assert r.state() is None or r.state().sid is None


def test_proactive_closes_by_stream_time_of_another_key_R6_R10():
    r = run([ev("user_message", T0, key="app-1:a"),
             ev("user_message", T0 + INACTIVITY + LATENESS, key="app-1:b")])
    assert [(t, k) for t, k, _ in r.outs] == [
        (OPENED, "app-1:a"), (CLOSED, "app-1:a"), (OPENED, "app-1:b")]
    assert r.closed[0]["closed_at"] == T0 + INACTIVITY


def test_late_arriving_event_at_deadline_closes_then_opens_R6():
    # the clock is at T0+15m-2s (lateness) so only the event itself can close the session
    first = ev("user_message", T0)
    late = ev("user_message", T0 + INACTIVITY, event_id="late")
    r = run([first, late])
    assert r.topics == [OPENED, CLOSED, OPENED]
    old = r.opened[0]["session_id"]
    closed, new = r.closed[0], r.opened[1]
    assert (closed["session_id"], closed["reason"], closed["closed_at"]) == (
        old, "inactivity", T0 + INACTIVITY)
    assert (new["trigger_event_id"], new["previous_session_id"], new["opened_at"]) == (
        "late", None, T0 + INACTIVITY)
    assert new["session_id"] != old


def test_event_just_before_deadline_keeps_session_open_R6():
    r = run([ev("user_message", T0), ev("user_message", T0 + INACTIVITY - 1)])
    assert r.topics == [OPENED]


@pytest.mark.parametrize("etype", ["agent_message", "on_connect", "auth", "discard", "discard_all"])
def test_any_event_type_after_deadline_closes_proactive_session_R6(etype):
    r = run([ev("user_message", T0), ev(etype, T0 + INACTIVITY + 1)])
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert r.closed[0]["closed_at"] == T0 + INACTIVITY
    assert r.opened[1]["previous_session_id"] is None
    assert r.opened[1]["interactive"] is (etype in ("auth", "discard", "discard_all"))


def test_context_after_deadline_closes_session_and_is_ignored_R6_R14():
    r = run([ev("user_message", T0),
             ev("context", T0 + INACTIVITY + SEC, dialog={"intent": "X"},
                variables=[{"name": "v", "value": 1}])])
    assert r.topics == [OPENED, CLOSED]
    assert only(r.closed)["closed_at"] == T0 + INACTIVITY
    assert r.stats["context_ignored"] == 1
    assert r.state() is None or (r.state().sid is None and not r.state().vars)


def test_refresh_after_deadline_closes_by_inactivity_and_opens_with_no_previous_R6_R13():
    r = run([ev("user_message", T0), ev("refresh", T0 + INACTIVITY + SEC, event_id="rf")])
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert r.closed[0]["reason"] == "inactivity"
    assert r.closed[0]["closed_at"] == T0 + INACTIVITY
    new = r.opened[1]
    assert (new["trigger"], new["interactive"], new["previous_session_id"]) == ("refresh", False, None)


def _per_key(outs):
    by = {}
    for t, k, v in outs:
        by.setdefault(k, []).append((t, v))
    return by


def test_result_does_not_depend_on_clock_or_event_first_R6_R22():
    log = [ev("user_message", T0, event_id="a1", key="app-1:a"),
           ev("on_connect", T0 + MIN, event_id="b1", key="app-1:b"),
           ev("user_message", T0 + 40 * MIN, event_id="a2", key="app-1:a"),
           ev("context", T0 + 41 * MIN, event_id="b2", key="app-1:b", tags=["x"])]
    event_first = run(log)
    clock_first = run(log[:2] + [Until(T0 + 40 * MIN - LATENESS)] + log[2:])
    assert _per_key(event_first.outs) == _per_key(clock_first.outs)
    assert [c["closed_at"] for c in clock_first.closed] == [T0 + INACTIVITY, T0 + MIN + INACTIVITY]


def test_proactive_late_event_close_also_notifies_and_clears_auth_R6_R16_R17():
    settings = {"app-1": {"clear_auth_profiles": True,
                          "closure": {"behavior": "message", "message": "Bye", "channels": ["web"]}}}
    r = run([ev("auth", T0, auth_profile="P"), ev("user_message", T0 + INACTIVITY)], settings=settings)
    assert r.topics == [OPENED, NOTIFICATION, CLOSED, OPENED]
    assert r.notifications[0]["ts"] == T0 + INACTIVITY
    assert r.closed[0]["cleared"]["auth_profiles"] == ["P"]
    assert r.closed[0]["notified"] is True


# --- R7 continue_on_same_intent ----------------------------------------------------------

def test_new_intent_after_gap_opens_new_session_R7():
    r = run([ev("user_message", T0, intent="A"),
             ev("user_message", T0 + GAP, intent="B", event_id="b", channel="slack")],
            settings={"app-1": CONTINUE})
    assert r.topics == [OPENED, CLOSED, OPENED]
    old = r.opened[0]["session_id"]
    closed = r.closed[0]
    assert (closed["session_id"], closed["reason"], closed["closed_at"], closed["last_activity_at"]) \
        == (old, "new_intent", T0 + GAP, T0)
    assert closed["cleared"]["dialog"] is True
    new = r.opened[1]
    assert (new["previous_session_id"], new["trigger_event_id"], new["interactive"],
            new["opened_at"], new["channel"]) == (old, "b", True, T0 + GAP, "slack")


def test_new_intent_at_exactly_the_deadline_closes_R7():
    r = run([ev("user_message", T0, intent="A"), ev("user_message", T0 + INACTIVITY, intent="B")],
            settings={"app-1": CONTINUE})
    assert r.topics == [OPENED, CLOSED, OPENED]


def test_new_intent_before_deadline_continues_R7():
    r = run([ev("user_message", T0, intent="A"), ev("user_message", T0 + INACTIVITY - 1, intent="B")],
            settings={"app-1": CONTINUE})
    assert r.topics == [OPENED]


def test_invalid_input_null_intent_after_gap_closes_as_invalid_input_R7():
    r = run([ev("user_message", T0, intent="A"),
             ev("user_message", T0 + GAP, intent=None, input_valid=False)],
            settings={"app-1": CONTINUE})
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert (r.closed[0]["reason"], r.closed[0]["closed_at"]) == ("invalid_input", T0 + GAP)
    assert r.opened[1]["previous_session_id"] == r.opened[0]["session_id"]


def test_null_intent_with_no_current_intent_closes_as_invalid_input_R7():
    r = run([ev("user_message", T0, intent=None), ev("user_message", T0 + GAP, intent=None)],
            settings={"app-1": CONTINUE})
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert r.closed[0]["reason"] == "invalid_input"


def test_null_intent_with_no_current_intent_in_agent_opened_session_closes_R7():
    r = run([ev("on_connect", T0), ev("user_message", T0 + GAP, intent=None)],
            settings={"app-1": CONTINUE})
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert r.closed[0]["reason"] == "invalid_input"
    assert r.closed[0]["interactive"] is False


def test_same_intent_after_gap_continues_R7():
    r = run([ev("user_message", T0, intent="A"), ev("user_message", T0 + GAP, intent="A")],
            settings={"app-1": CONTINUE})
    assert r.topics == [OPENED]
    # the continuing event is activity: the next deadline counts from it
    r.feed(ev("user_message", T0 + GAP + INACTIVITY - 1, intent="B"))
    assert r.topics == [OPENED]


def test_valid_null_intent_input_for_dialog_in_progress_continues_R7():
    r = run([ev("user_message", T0, intent="A"),
             ev("user_message", T0 + GAP, intent=None, input_valid=True)],
            settings={"app-1": CONTINUE})
    assert r.topics == [OPENED]


@pytest.mark.parametrize("etype", ["auth", "discard", "discard_all"])
def test_auth_and_discard_after_gap_continue_R7(etype):
    r = run([ev("user_message", T0, intent="A"), ev(etype, T0 + GAP)], settings={"app-1": CONTINUE})
    assert r.topics == [OPENED]


@pytest.mark.parametrize("etype,fields", [
    ("agent_message", {}), ("on_connect", {"action": "trigger_dialog", "intent": "B"}),
    ("context", {"dialog": {"intent": "B"}})])
def test_agent_and_context_events_never_close_in_continue_mode_R7(etype, fields):
    r = run([ev("user_message", T0, intent="A"), ev(etype, T0 + GAP, **fields),
             ev(etype, T0 + 5 * DAY, **fields)], settings={"app-1": CONTINUE})
    assert r.topics == [OPENED]


def test_continue_mode_never_closes_on_timer_R7():
    r = run([ev("user_message", T0, intent="A")], settings={"app-1": CONTINUE}, until=T0 + 5 * DAY)
    assert r.topics == [OPENED]


def test_continue_mode_gap_counts_from_last_user_event_not_agent_replies_R7_R3():
    r = run([ev("user_message", T0, intent="A"), ev("agent_message", T0 + 10 * MIN),
             ev("user_message", T0 + 16 * MIN, intent="B")], settings={"app-1": CONTINUE})
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert r.closed[0]["last_activity_at"] == T0


def test_new_intent_close_in_continue_mode_sends_no_notification_R7_R17():
    settings = {"app-1": {**CONTINUE, "closure": {"behavior": "message", "message": "Bye",
                                                   "channels": ["web"]}}}
    r = run([ev("user_message", T0, intent="A"), ev("user_message", T0 + GAP, intent="B")],
            settings=settings)
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert r.closed[0]["notified"] is False


def test_upgrade_and_new_intent_in_continue_mode_R7_R2():
    # a non-interactive session whose first user message comes after the gap with an intent:
    # it has no current intent, so the message closes it (new_intent) and opens a new one.
    r = run([ev("on_connect", T0), ev("user_message", T0 + GAP, intent="A")],
            settings={"app-1": CONTINUE})
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert r.closed[0]["reason"] == "new_intent"
    assert r.opened[1]["interactive"] is True
    # before the gap the same message upgrades it instead
    r = run([ev("on_connect", T0), ev("user_message", T0 + MIN, intent="A")],
            settings={"app-1": CONTINUE})
    assert r.topics == [OPENED, UPGRADED]


# --- R8 legacy ---------------------------------------------------------------------------

def test_legacy_user_event_after_deadline_closes_at_deadline_and_opens_new_R8():
    r = run([ev("user_message", T0, intent="A"), ev("user_message", T0 + GAP, intent="A", event_id="x")],
            settings={"app-1": LEGACY})
    assert r.topics == [OPENED, CLOSED, OPENED]
    old = r.opened[0]["session_id"]
    assert (r.closed[0]["reason"], r.closed[0]["closed_at"]) == ("inactivity", T0 + INACTIVITY)
    assert (r.opened[1]["previous_session_id"], r.opened[1]["trigger_event_id"]) == (old, "x")


@pytest.mark.parametrize("etype", ["agent_message", "on_connect"])
def test_legacy_agent_event_after_deadline_closes_and_opens_non_interactive_R8(etype):
    r = run([ev("user_message", T0), ev(etype, T0 + GAP)], settings={"app-1": LEGACY})
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert r.closed[0]["closed_at"] == T0 + INACTIVITY
    assert (r.opened[1]["interactive"], r.opened[1]["previous_session_id"]) == (
        False, r.opened[0]["session_id"])


def test_legacy_never_closes_on_timer_R8():
    r = run([ev("user_message", T0)], settings={"app-1": LEGACY}, until=T0 + 5 * DAY)
    assert r.topics == [OPENED]


def test_legacy_event_before_deadline_continues_R8():
    r = run([ev("user_message", T0), ev("user_message", T0 + INACTIVITY - 1)],
            settings={"app-1": LEGACY})
    assert r.topics == [OPENED]


def test_legacy_context_after_deadline_does_not_close_R8_R14():
    r = run([ev("user_message", T0), ev("context", T0 + GAP, tags=["a"])], settings={"app-1": LEGACY})
    assert r.topics == [OPENED]
    assert r.state().tags == ["a"]


def test_legacy_refresh_after_deadline_closes_as_refresh_R8_R13():
    r = run([ev("user_message", T0), ev("refresh", T0 + GAP)], settings={"app-1": LEGACY})
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert (r.closed[0]["reason"], r.closed[0]["closed_at"]) == ("refresh", T0 + GAP)


def test_legacy_inactivity_close_keeps_auth_and_sends_no_message_R8_R16_R17():
    settings = {"app-1": {**LEGACY, "clear_auth_profiles": True,
                          "closure": {"behavior": "message", "message": "Bye", "channels": ["web"]}}}
    r = run([ev("auth", T0, auth_profile="P"), ev("user_message", T0 + GAP)], settings=settings)
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert r.closed[0]["notified"] is False
    assert r.closed[0]["cleared"]["auth_profiles"] == []
    assert r.state(KEY).auth == ["P"]
