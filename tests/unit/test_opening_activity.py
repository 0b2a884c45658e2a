"""R1–R5: opening, upgrading, activity time, deadline, developer/billable."""
from __future__ import annotations

import pytest

from tests.builders import (CLOSED, INACTIVITY, KEY, MIN, OPENED, SEC, T0, UPGRADED, SetSettings,
                            Until, ev, only, run)
from worker.domain import CoreConfig

USER_TYPES = ["user_message", "auth", "discard", "discard_all"]


# --- R1 Open -----------------------------------------------------------------------------

def test_user_message_opens_interactive_session_with_exact_record_R1():
    e = ev("user_message", T0, event_id="e-1", channel="web", intent="BookFlight")
    r = run([e])
    assert r.topics == [OPENED]
    rec = only(r.opened)
    sid = rec["session_id"]
    assert rec == {
        "schema": "session-opened/1", "session_id": sid, "app_id": "app-1", "user_id": "u-1",
        "opened_at": T0, "interactive": True, "developer": False, "channel": "web",
        "trigger": "user_message", "trigger_event_id": "e-1", "previous_session_id": None,
    }
    assert r.outs[0][1] == KEY


@pytest.mark.parametrize("etype", USER_TYPES)
def test_every_user_event_type_opens_interactive_session_R1(etype):
    r = run([ev(etype, T0, channel="slack")])
    rec = only(r.opened)
    assert rec["interactive"] is True
    assert rec["trigger"] == etype
    assert rec["channel"] == "slack"


@pytest.mark.parametrize("etype,fields", [
    ("agent_message", {}),
    ("on_connect", {"action": "run_script"}),
    ("on_connect", {"action": "run_message"}),
    ("on_connect", {"action": "trigger_dialog", "intent": "Greet"}),
])
def test_agent_events_open_non_interactive_session_R1(etype, fields):
    r = run([ev(etype, T0, **fields)])
    rec = only(r.opened)
    assert rec["interactive"] is False
    assert rec["trigger"] == etype
    assert r.upgraded == []


def test_refresh_opens_non_interactive_session_R1_R13():
    r = run([ev("refresh", T0)])
    rec = only(r.opened)
    assert (rec["interactive"], rec["trigger"], rec["previous_session_id"]) == (False, "refresh", None)


def test_context_never_opens_a_session_R1_R14():
    r = run([ev("context", T0, dialog={"intent": "X"}, tags=["a"],
                variables=[{"name": "v", "value": 1}])])
    assert r.outs == []
    assert r.stats["context_ignored"] == 1
    assert r.state() is None


def test_second_event_joins_open_session_instead_of_opening_R1():
    r = run([ev("user_message", T0), ev("agent_message", T0 + SEC), ev("user_message", T0 + 2 * SEC)])
    assert r.topics == [OPENED]


def test_each_key_has_its_own_session_R1():
    r = run([ev("user_message", T0, key="app-1:u-1"), ev("user_message", T0, key="app-1:u-2"),
             ev("user_message", T0, key="app-2:u-1")])
    assert [(o[1], o[2]["app_id"], o[2]["user_id"]) for o in r.outs] == [
        ("app-1:u-1", "app-1", "u-1"), ("app-1:u-2", "app-1", "u-2"), ("app-2:u-1", "app-2", "u-1")]
    assert len({o["session_id"] for o in r.opened}) == 3


# --- R2 Upgrade --------------------------------------------------------------------------

def test_first_user_event_upgrades_non_interactive_session_exactly_once_R2():
    r = run([ev("on_connect", T0, channel="web"),
             ev("agent_message", T0 + MIN),
             ev("user_message", T0 + 2 * MIN, event_id="u-first", channel="slack"),
             ev("user_message", T0 + 3 * MIN),
             ev("auth", T0 + 4 * MIN)],
            until=T0 + 4 * MIN + INACTIVITY)
    assert r.topics == [OPENED, UPGRADED, CLOSED]
    sid = r.opened[0]["session_id"]
    assert only(r.upgraded) == {
        "schema": "session-upgraded/1", "session_id": sid, "app_id": "app-1", "user_id": "u-1",
        "upgraded_at": T0 + 2 * MIN, "trigger_event_id": "u-first", "channel": "slack"}
    closed = only(r.closed)
    assert (closed["interactive"], closed["billable"]) == (True, True)
    assert (closed["user_events"], closed["agent_events"]) == (3, 2)


@pytest.mark.parametrize("etype", USER_TYPES)
def test_any_user_event_type_upgrades_R2(etype):
    r = run([ev("agent_message", T0), ev(etype, T0 + MIN)])
    assert r.topics == [OPENED, UPGRADED]


def test_interactive_session_is_never_upgraded_R2():
    r = run([ev("user_message", T0), ev("agent_message", T0 + MIN), ev("user_message", T0 + 2 * MIN)])
    assert r.upgraded == []


def test_upgrade_makes_activity_follow_user_events_from_the_upgrading_one_R2_R3():
    # on_connect T0, user T0+5m (upgrade, activity T0+5m), agent T0+14m does not count
    r = run([ev("on_connect", T0), ev("user_message", T0 + 5 * MIN),
             ev("agent_message", T0 + 14 * MIN)], until=T0 + 30 * MIN)
    closed = only(r.closed)
    assert closed["last_activity_at"] == T0 + 5 * MIN
    assert closed["closed_at"] == T0 + 5 * MIN + INACTIVITY


def test_upgrade_by_older_user_event_keeps_activity_at_max_R2_R3():
    # decision: the upgrade sets activity to max(activity, ts)
    r = run([ev("on_connect", T0), ev("agent_message", T0 + 10 * MIN),
             ev("user_message", T0 + 5 * MIN),          # upgrades, older than activity
             ev("agent_message", T0 + 20 * MIN)],       # interactive now: not activity
            until=T0 + 2 * 60 * MIN)
    assert r.topics == [OPENED, UPGRADED, CLOSED]
    closed = only(r.closed)
    assert closed["last_activity_at"] == T0 + 10 * MIN
    assert closed["closed_at"] == T0 + 25 * MIN


# --- R3 Activity -------------------------------------------------------------------------

def test_agent_replies_do_not_keep_interactive_session_alive_R3():
    r = run([ev("user_message", T0), ev("agent_message", T0 + 10 * MIN),
             ev("on_connect", T0 + 14 * MIN)], until=T0 + 15 * MIN)
    closed = only(r.closed)
    assert closed["closed_at"] == T0 + INACTIVITY
    assert closed["last_activity_at"] == T0
    assert (closed["user_events"], closed["agent_events"]) == (1, 2)


def test_non_interactive_activity_is_latest_agent_event_R3():
    r = run([ev("on_connect", T0), ev("agent_message", T0 + 10 * MIN)], until=T0 + 24 * MIN)
    assert r.closed == []
    r.feed(Until(T0 + 25 * MIN))
    closed = only(r.closed)
    assert (closed["last_activity_at"], closed["closed_at"]) == (T0 + 10 * MIN, T0 + 25 * MIN)
    assert (closed["interactive"], closed["user_events"], closed["agent_events"]) == (False, 0, 2)


def test_older_event_never_moves_activity_backwards_R3():
    r = run([ev("user_message", T0 + 10 * MIN), ev("user_message", T0 + 5 * MIN)],
            until=T0 + 60 * MIN)
    closed = only(r.closed)
    assert (closed["last_activity_at"], closed["closed_at"]) == (T0 + 10 * MIN, T0 + 25 * MIN)
    assert closed["opened_at"] == T0 + 10 * MIN


def test_older_agent_event_never_moves_non_interactive_activity_backwards_R3():
    r = run([ev("on_connect", T0 + 10 * MIN), ev("agent_message", T0 + 2 * MIN)], until=T0 + 60 * MIN)
    assert only(r.closed)["last_activity_at"] == T0 + 10 * MIN


def test_context_is_not_activity_R3_R14():
    r = run([ev("user_message", T0), ev("context", T0 + 10 * MIN, tags=["a"])], until=T0 + 15 * MIN)
    assert only(r.closed)["closed_at"] == T0 + INACTIVITY


# --- R4 Deadline -------------------------------------------------------------------------

def test_deadline_is_activity_plus_default_15_minutes_R4():
    r = run([ev("user_message", T0)], until=T0 + INACTIVITY - 1)
    assert r.closed == []
    r.feed(Until(T0 + INACTIVITY + 1))
    assert only(r.closed)["closed_at"] == T0 + INACTIVITY


@pytest.mark.parametrize("minutes", [5, 7, 60, 20_160])
def test_deadline_uses_app_inactivity_setting_R4(minutes):
    r = run([ev("user_message", T0)], settings={"app-1": {"inactivity_minutes": minutes}},
            until=T0 + minutes * MIN - 1)
    assert r.closed == []
    r.feed(Until(T0 + minutes * MIN))
    assert only(r.closed)["closed_at"] == T0 + minutes * MIN


def test_settings_apply_per_app_R4():
    r = run([ev("user_message", T0, key="app-1:u"), ev("user_message", T0, key="app-2:u")],
            settings={"app-1": {"inactivity_minutes": 5}}, until=T0 + 60 * MIN)
    assert [(c["app_id"], c["closed_at"]) for c in r.closed] == [
        ("app-1", T0 + 5 * MIN), ("app-2", T0 + 15 * MIN)]


@pytest.mark.parametrize("minutes,ok", [(4, False), (5, True), (20_160, True), (20_161, False)])
def test_default_inactivity_bounds_5_to_20160_R4_R19(minutes, ok):
    r = run([SetSettings("app-1", {"app_id": "app-1", "inactivity_minutes": minutes})])
    assert (r.rejected == []) is ok
    assert r.book.get("app-1").inactivity_ms == (minutes * MIN if ok else INACTIVITY)


@pytest.mark.parametrize("minutes,ok", [(1, True), (30, True), (31, False), (20_160, False)])
def test_operator_configured_inactivity_bounds_R4_R19(minutes, ok):
    cfg = CoreConfig(min_inactivity_minutes=1, max_inactivity_minutes=30)
    r = run([SetSettings("app-1", {"app_id": "app-1", "inactivity_minutes": minutes}),
             ev("user_message", T0)], cfg=cfg, until=T0 + 2 * 60 * MIN)
    assert (r.rejected == []) is ok
    assert only(r.closed)["closed_at"] == T0 + (minutes * MIN if ok else INACTIVITY)


# --- R5 Developer and billable -----------------------------------------------------------

def test_developer_session_is_never_billable_R5():
    r = run([ev("user_message", T0, developer=True)], until=T0 + 60 * MIN)
    assert only(r.opened)["developer"] is True
    closed = only(r.closed)
    assert (closed["developer"], closed["interactive"], closed["billable"],
            closed["billing_blocks"]) == (True, True, False, 0)


def test_developer_flag_is_fixed_by_the_opening_event_R5():
    r = run([ev("user_message", T0, developer=False), ev("user_message", T0 + MIN, developer=True)],
            until=T0 + 60 * MIN)
    assert (only(r.closed)["developer"], only(r.closed)["billable"]) == (False, True)
    r = run([ev("on_connect", T0, developer=True), ev("user_message", T0 + MIN, developer=False)],
            until=T0 + 60 * MIN)
    closed = only(r.closed)
    assert (closed["developer"], closed["interactive"], closed["billable"]) == (True, True, False)


def test_next_session_of_the_key_takes_its_own_developer_flag_R5():
    r = run([ev("user_message", T0, developer=True), ev("user_message", T0 + 20 * MIN, developer=False),
             ev("refresh", T0 + 21 * MIN, developer=True), ev("on_connect", T0 + 50 * MIN)],
            until=T0 + 2 * 60 * MIN)
    assert [o["developer"] for o in r.opened] == [True, False, True, False]
    assert [c["developer"] for c in r.closed] == [True, False, True, False]
    assert [c["billable"] for c in r.closed] == [False, True, False, False]


def test_non_interactive_session_is_never_billable_R5():
    r = run([ev("on_connect", T0), ev("agent_message", T0 + MIN)], until=T0 + 60 * MIN)
    closed = only(r.closed)
    assert (closed["interactive"], closed["developer"], closed["billable"],
            closed["billing_blocks"]) == (False, False, False, 0)


def test_interactive_user_session_is_billable_R5():
    r = run([ev("auth", T0)], until=T0 + 60 * MIN)
    closed = only(r.closed)
    assert (closed["interactive"], closed["developer"], closed["billable"]) == (True, False, True)


def test_partners_whose_record_keys_collide_are_not_merged_R1_R20():
    # (app "a", user "b:c") and (app "a:b", user "c") are two conversation partners, but
    # both have the record key "a:b:c". SEMANTICS: a key is one partner (app_id, user_id)
    # and an event of a partner with no open session opens one (R1). Acceptable outcomes:
    # two separate sessions, or the ambiguous record rejected as a dead letter (R20).
    # The codec rejects an app_id containing ":" (bad_field), so the key is unambiguous.
    from tests.builders import replayer, raw
    rr = replayer()
    rr.event(raw("user_message", T0, app_id="a", user_id="b:c"), key="a:b:c")
    second = rr.event(raw("user_message", T0 + MIN, app_id="a:b", user_id="c"), key="a:b:c")
    rr.until(T0 + 2 * 60 * MIN)
    dead = [v for t, _, v in second if t == "conversation-events-dlq"]
    opened_second = [v for t, _, v in second if t == OPENED
                     and (v["app_id"], v["user_id"]) == ("a:b", "c")]
    assert dead or opened_second
    first_closed = [v for t, _, v in rr.outs if t == CLOSED and v["app_id"] == "a"]
    assert only(first_closed)["user_events"] == 1
