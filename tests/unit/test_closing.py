"""R15 what a close clears, R16 auth clearing, R17 closure message, R18 retention."""
from __future__ import annotations

import pytest

from tests.builders import (CLOSED, DAY, DEDUPE, HOUR, INACTIVITY, KEY, MIN, NOTIFICATION, OPENED,
                            RETENTION, SEC, T0, UPGRADED, Until, ev, only, run)

MESSAGE = {"behavior": "message", "message": "Your session has ended.", "channels": ["web", "slack"]}


def _vars(*specs):
    """("name", ttl_s or None, auth_profile or None) -> context variables."""
    out = []
    for name, ttl, profile in specs:
        item = {"name": name, "value": name.upper()}
        if ttl is not None:
            item["ttl_s"] = ttl
        if profile is not None:
            item["auth_profile"] = profile
        out.append(item)
    return out


# --- R15 What a close clears -------------------------------------------------------------

def test_close_clears_variables_without_ttl_and_lists_them_sorted_R15():
    r = run([ev("user_message", T0),
             ev("context", T0 + 1, variables=_vars(("zeta", None, None), ("alpha", None, None),
                                                    ("mid", 3600, None), ("beta", None, None)))],
            until=T0 + INACTIVITY)
    assert only(r.closed)["cleared"]["variables"] == ["alpha", "beta", "zeta"]
    assert set(r.state().vars) == {"mid"}


def test_ttl_variable_survives_closes_until_set_ts_plus_ttl_R15():
    # "mid" is set at T0+1 with a 1 h TTL: it lives until T0+1+1h, across sessions
    log = [ev("user_message", T0),
           ev("context", T0 + 1, variables=_vars(("mid", 3600, None)))]
    r = run(log, until=T0 + INACTIVITY)              # first session closed
    assert r.closed[0]["cleared"]["variables"] == []
    r.feed(ev("user_message", T0 + 30 * MIN))       # a new session sees it still
    assert "mid" in r.state().vars
    r.feed(ev("refresh", T0 + 40 * MIN))            # refresh clears (and lists) it
    assert r.closed[-1]["cleared"]["variables"] == ["mid"]
    # same story, but the refresh comes after the TTL: the variable was already gone
    r = run(log + [ev("user_message", T0 + 50 * MIN), ev("refresh", T0 + 1 + HOUR)])
    assert r.topics == [OPENED, CLOSED, OPENED, CLOSED, OPENED]
    assert r.closed[-1]["reason"] == "refresh"
    assert r.closed[-1]["cleared"]["variables"] == []


def test_ttl_variable_is_forgotten_after_its_ttl_without_a_session_R15():
    r = run([ev("user_message", T0),
             ev("context", T0 + 1, variables=_vars(("mid", 3600, None)))], until=T0 + 30 * MIN)
    assert "mid" in r.state().vars
    r.feed(Until(T0 + 1 + HOUR))
    assert r.state() is None or not r.state().vars


def test_close_clears_dialog_tags_and_sentiment_R15():
    r = run([ev("user_message", T0, intent="A"),
             ev("context", T0 + 1, dialog={"intent": "A"}, tags=["a"], sentiment={"joy": 1}),
             ev("context", T0 + 2, tags=["b"]),
             ev("user_message", T0 + INACTIVITY + SEC)])
    assert r.closed[0]["cleared"]["dialog"] is True
    st = r.state()
    assert st.sid is not None
    assert (st.dialog, st.intent, st.tags, st.hist, st.sentiment) == (None, None, None, None, None)


def test_variables_set_in_one_session_without_ttl_do_not_leak_into_next_R15():
    r = run([ev("user_message", T0), ev("context", T0 + 1, variables=_vars(("cart", None, None))),
             ev("user_message", T0 + INACTIVITY)])
    assert r.closed[0]["cleared"]["variables"] == ["cart"]
    assert not r.state().vars


# --- R16 Auth clearing -------------------------------------------------------------------

def _auth_session(settings, mode_close="clock"):
    log = [ev("user_message", T0),
           ev("auth", T0 + 1, auth_profile="Salesforce"),
           ev("auth", T0 + 2, auth_profile="Jira"),
           ev("context", T0 + 3, variables=_vars(("sf_token", DAY // SEC, "Salesforce"),
                                                  ("sf_plain", None, "Salesforce"),
                                                  ("jira_token", DAY // SEC, "Jira"),
                                                  ("other_ttl", DAY // SEC, None),
                                                  ("plain", None, None)))]
    return run(log, settings={"app-1": settings}, until=T0 + HOUR)


def test_clear_auth_profiles_clears_every_profile_and_its_variables_R16():
    r = _auth_session({"clear_auth_profiles": True})
    closed = only(r.closed)
    assert closed["cleared"] == {
        "variables": ["jira_token", "plain", "sf_plain", "sf_token"],
        "auth_profiles": ["Jira", "Salesforce"], "dialog": False}
    assert not r.state().auth
    assert set(r.state().vars) == {"other_ttl"}


def test_close_script_clear_auth_profiles_clears_named_profiles_and_their_variables_R16():
    r = _auth_session({"close_script": "koreUtil.ClearAuthProfiles(['Salesforce'])"})
    closed = only(r.closed)
    assert closed["cleared"]["auth_profiles"] == ["Salesforce"]
    assert closed["cleared"]["variables"] == ["plain", "sf_plain", "sf_token"]
    assert r.state().auth == ["Jira"]
    assert set(r.state().vars) == {"jira_token", "other_ttl"}


def test_close_script_clear_all_auth_profiles_R16():
    r = _auth_session({"close_script": "koreUtil.ClearAllAuthProfiles()"})
    assert only(r.closed)["cleared"]["auth_profiles"] == ["Jira", "Salesforce"]
    assert not r.state().auth


def test_close_script_with_several_statements_R16():
    script = "koreUtil.ClearAuthProfiles(['Salesforce']);\n  koreUtil.ClearAuthProfiles([\"Jira\"])\n"
    r = _auth_session({"close_script": script})
    assert only(r.closed)["cleared"]["auth_profiles"] == ["Jira", "Salesforce"]


def test_close_script_naming_unknown_profile_clears_nothing_else_R16():
    r = _auth_session({"close_script": "koreUtil.ClearAuthProfiles(['Github'])"})
    assert only(r.closed)["cleared"]["auth_profiles"] == []
    assert r.state().auth == ["Salesforce", "Jira"]


def test_no_auth_clearing_by_default_R16():
    r = _auth_session({})
    assert only(r.closed)["cleared"] == {"variables": ["plain", "sf_plain"], "auth_profiles": [],
                                         "dialog": False}
    assert r.state().auth == ["Salesforce", "Jira"]


@pytest.mark.parametrize("mode", ["continue_on_same_intent", "legacy"])
def test_auth_clearing_only_on_proactive_inactivity_closes_R16(mode):
    settings = {"mode": mode, "clear_auth_profiles": True,
                "close_script": "koreUtil.ClearAllAuthProfiles()"}
    r = run([ev("user_message", T0, intent="A"), ev("auth", T0 + 1, auth_profile="P"),
             ev("user_message", T0 + 30 * MIN, intent="B")], settings={"app-1": settings})
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert r.closed[0]["cleared"]["auth_profiles"] == []
    assert r.state().auth == ["P"]


# --- R17 Closure message -----------------------------------------------------------------

def test_closure_message_on_listed_channel_is_emitted_before_session_closed_R17():
    r = run([ev("user_message", T0, channel="web")], settings={"app-1": {"closure": MESSAGE}},
            until=T0 + HOUR)
    assert r.topics == [OPENED, NOTIFICATION, CLOSED]
    sid = r.opened[0]["session_id"]
    assert r.outs[1][1] == KEY
    assert only(r.notifications) == {
        "schema": "session-notification/1", "session_id": sid, "app_id": "app-1",
        "user_id": "u-1", "channel": "web", "text": "Your session has ended.",
        "ts": T0 + INACTIVITY}
    assert only(r.closed)["notified"] is True


def test_closure_message_goes_to_channel_of_last_user_event_R17():
    settings = {"app-1": {"closure": {**MESSAGE, "channels": ["slack"]}}}
    r = run([ev("on_connect", T0, channel="web"), ev("user_message", T0 + 1, channel="web"),
             ev("user_message", T0 + 2, channel="slack"), ev("agent_message", T0 + 3, channel="web")],
            settings=settings, until=T0 + HOUR)
    assert only(r.notifications)["channel"] == "slack"
    assert only(r.closed)["channel"] == "slack"
    # last user event on web, web not listed: no message
    r = run([ev("user_message", T0, channel="slack"), ev("user_message", T0 + 1, channel="web")],
            settings=settings, until=T0 + HOUR)
    assert r.notifications == [] and only(r.closed)["notified"] is False
    assert only(r.closed)["channel"] == "web"


def test_closure_message_uses_opening_channel_without_user_events_R17():
    r = run([ev("on_connect", T0, channel="slack"), ev("agent_message", T0 + 1, channel="web")],
            settings={"app-1": {"closure": MESSAGE}}, until=T0 + HOUR)
    assert only(r.notifications)["channel"] == "slack"
    assert only(r.closed)["channel"] == "slack"


@pytest.mark.parametrize("channel", ["email", "sms", "brand-new-channel"])
def test_unlisted_channels_get_no_closure_message_R17(channel):
    r = run([ev("user_message", T0, channel=channel)], settings={"app-1": {"closure": MESSAGE}},
            until=T0 + HOUR)
    assert r.topics == [OPENED, CLOSED]
    assert only(r.closed)["notified"] is False


def test_message_behavior_with_default_channels_notifies_nobody_R17():
    r = run([ev("user_message", T0, channel="web")],
            settings={"app-1": {"closure": {"behavior": "message", "message": "Bye"}}}, until=T0 + HOUR)
    assert r.notifications == []


def test_silent_close_emits_no_message_R17():
    r = run([ev("user_message", T0, channel="web")],
            settings={"app-1": {"closure": {"behavior": "silent", "message": "Bye",
                                            "channels": ["web"]}}}, until=T0 + HOUR)
    assert r.topics == [OPENED, CLOSED]
    assert only(r.closed)["notified"] is False


def test_closure_message_sent_for_upgraded_session_R17_R2():
    r = run([ev("on_connect", T0, channel="email"), ev("user_message", T0 + 1, channel="web")],
            settings={"app-1": {"closure": MESSAGE}}, until=T0 + HOUR)
    assert r.topics == [OPENED, UPGRADED, NOTIFICATION, CLOSED]
    assert r.notifications[0]["channel"] == "web"


# --- R18 Retention -----------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["continue_on_same_intent", "legacy"])
def test_key_expires_after_retention_in_non_proactive_modes_R18(mode):
    settings = {"mode": mode, "closure": MESSAGE, "clear_auth_profiles": True}
    r = run([ev("user_message", T0, intent="A"), ev("auth", T0, auth_profile="P"),
             ev("context", T0, variables=_vars(("plain", None, None), ("long", 30 * DAY // SEC, None)))],
            settings={"app-1": settings}, until=T0 + RETENTION - 1)
    assert r.topics == [OPENED]
    r.feed(Until(T0 + RETENTION))
    assert r.topics == [OPENED, CLOSED]
    closed = only(r.closed)
    assert (closed["reason"], closed["closed_at"], closed["last_activity_at"]) == (
        "expired", T0 + RETENTION, T0)
    assert closed["cleared"] == {"variables": ["long", "plain"], "auth_profiles": ["P"], "dialog": True}
    assert closed["notified"] is False
    assert not r.state().vars and not r.state().auth


def test_expiry_counts_from_activity_time_not_agent_events_R18_R3():
    r = run([ev("user_message", T0), ev("agent_message", T0 + DAY)],
            settings={"app-1": {"mode": "continue_on_same_intent"}}, until=T0 + RETENTION)
    assert only(r.closed)["closed_at"] == T0 + RETENTION


def test_event_at_expiry_time_closes_expired_then_opens_new_session_R18():
    r = run([ev("user_message", T0, intent="A"), ev("user_message", T0 + RETENTION, intent="A")],
            settings={"app-1": {"mode": "continue_on_same_intent"}})
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert (r.closed[0]["reason"], r.closed[0]["closed_at"]) == ("expired", T0 + RETENTION)
    assert r.opened[1]["previous_session_id"] is None


def test_retention_is_a_worker_setting_R18():
    from worker.domain import CoreConfig
    r = run([ev("user_message", T0)], settings={"app-1": {"mode": "legacy"}},
            cfg=CoreConfig(retention_ms=2 * HOUR), until=T0 + 2 * HOUR)
    assert only(r.closed)["closed_at"] == T0 + 2 * HOUR


def test_expired_key_state_is_dropped_after_dedupe_window_R18_R21():
    r = run([ev("user_message", T0)], settings={"app-1": {"mode": "continue_on_same_intent"}},
            until=T0 + RETENTION)
    assert r.state() is not None                 # still remembers its event ids
    r.feed(Until(T0 + RETENTION + DEDUPE))
    assert r.state() is None
    assert KEY not in r.part.states and r.part.due_of(KEY) is None


def test_event_ids_still_remembered_after_expired_close_R18_R21():
    first = ev("user_message", T0, event_id="e1")
    r = run([first], settings={"app-1": {"mode": "legacy"}}, until=T0 + RETENTION + DEDUPE - 1)
    assert r.feed(ev("user_message", T0, event_id="e1")) == []
    assert r.stats["duplicates"] == 1


def test_proactive_key_with_only_auth_profiles_keeps_no_state_after_retention_R18():
    r = run([ev("auth", T0, auth_profile="P")], until=T0 + RETENTION - 1)
    assert r.state().auth == ["P"]
    r.feed(Until(T0 + RETENTION))
    assert r.state() is None
    assert r.stats["states_expired"] == 1


def test_key_keeps_no_state_once_nothing_is_left_R18():
    r = run([ev("user_message", T0), ev("context", T0 + 1, variables=_vars(("t", 3600, None)))],
            until=T0 + INACTIVITY)
    assert r.state() is not None
    r.feed(Until(T0 + INACTIVITY + DEDUPE))
    assert r.state() is None and r.part.states == {}


@pytest.mark.parametrize("etype", ["user_message", "agent_message"])
@pytest.mark.parametrize("fast_path", [True, False], ids=["fast_path", "rules"])
def test_event_at_expiry_closes_when_retention_is_shorter_than_inactivity_R18(
        etype, fast_path):
    # retention (worker setting, 10 min) < inactivity (15 min), continue mode: an event at
    # activity + retention that the clock has not yet reached (lateness) must first close
    # the session as expired (R18 "as in R6"), then open a new one.
    from worker.domain import CoreConfig
    r = run([], settings={"app-1": {"mode": "continue_on_same_intent"}},
            cfg=CoreConfig(retention_ms=10 * MIN))
    r.part.fast_path = fast_path
    r.feed(ev("user_message", T0, intent="A"), ev(etype, T0 + 10 * MIN, intent="A"))
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert (r.closed[0]["reason"], r.closed[0]["closed_at"]) == ("expired", T0 + 10 * MIN)
    assert r.opened[1]["previous_session_id"] is None


def test_refresh_at_expiry_closes_expired_and_opens_with_no_previous_R18_R13():
    r = run([ev("user_message", T0, intent="A"), ev("auth", T0, auth_profile="P"),
             ev("refresh", T0 + RETENTION)], settings={"app-1": {"mode": "continue_on_same_intent"}})
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert (r.closed[0]["reason"], r.closed[0]["closed_at"]) == ("expired", T0 + RETENTION)
    assert r.closed[0]["cleared"]["auth_profiles"] == ["P"]
    assert (r.opened[1]["trigger"], r.opened[1]["previous_session_id"]) == ("refresh", None)


def test_context_at_expiry_closes_expired_and_is_ignored_R18_R14():
    r = run([ev("user_message", T0), ev("context", T0 + RETENTION, tags=["x"])],
            settings={"app-1": {"mode": "legacy"}})
    assert r.topics == [OPENED, CLOSED]
    assert r.closed[0]["reason"] == "expired"
    assert r.stats["context_ignored"] == 1


def test_ttl_variables_and_profiles_go_with_the_key_after_retention_R18_R15():
    r = run([ev("auth", T0, auth_profile="P"),
             ev("context", T0, variables=_vars(("long", 30 * DAY // SEC, None)))],
            until=T0 + RETENTION - 1)
    assert "long" in r.state().vars and r.state().auth == ["P"]
    r.feed(Until(T0 + RETENTION))
    assert r.state() is None
    # a new session of the key starts from nothing: its refresh has nothing to clear
    r.feed(ev("user_message", T0 + RETENTION + MIN), ev("refresh", T0 + RETENTION + 2 * MIN))
    assert r.closed[-1]["cleared"] == {"variables": [], "auth_profiles": [], "dialog": False}
