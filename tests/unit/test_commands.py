"""R11 discard, R12 discard_all, R13 refresh, R14 context, R14a auth.

Tags and sentiment appear in no output record, so some assertions read the key's state
(``PartitionSessions.states``)."""
from __future__ import annotations

import pytest

from tests.builders import (CLOSED, HOUR, INACTIVITY, MIN, OPENED, SEC, T0, UPGRADED, SetSettings,
                            ev, only, run)

CONTINUE = {"app-1": {"mode": "continue_on_same_intent"}}


def _session_with_context():
    """An open session with a dialog, current tags ['c'], historic [['a'], ['b']], sentiment."""
    return [ev("user_message", T0, intent="A"),
            ev("context", T0 + 1, dialog={"intent": "D", "node": 3}, tags=["a"],
               sentiment={"joy": 0.5}),
            ev("context", T0 + 2, tags=["b"]),
            ev("context", T0 + 3, tags=["c"], sentiment={"anger": 0.1})]


# --- R11 discard -------------------------------------------------------------------------

def test_discard_restores_last_historic_tags_and_clears_dialog_R11():
    r = run(_session_with_context() + [ev("discard", T0 + 4 * SEC)])
    assert r.topics == [OPENED]                 # the session stays open
    st = r.state()
    assert st.sid is not None
    assert (st.dialog, st.intent) == (None, None)
    assert st.tags == ["b"]
    assert not st.hist
    assert st.sentiment == {"joy": 0.5, "anger": 0.1}   # discard keeps tones


def test_discard_without_historic_tags_empties_current_tags_R11():
    r = run([ev("user_message", T0), ev("context", T0 + 1, tags=["a"]), ev("discard", T0 + 2)])
    st = r.state()
    assert not st.tags and not st.hist


def test_discard_is_a_user_event_R11_R3():
    r = run([ev("user_message", T0), ev("discard", T0 + 10 * MIN)], until=T0 + HOUR)
    closed = only(r.closed)
    assert (closed["last_activity_at"], closed["user_events"]) == (T0 + 10 * MIN, 2)
    assert closed["cleared"]["dialog"] is False


def test_discard_upgrades_non_interactive_session_R11_R2():
    r = run([ev("on_connect", T0), ev("discard", T0 + MIN)])
    assert r.topics == [OPENED, UPGRADED]


# --- R12 discard_all ---------------------------------------------------------------------

def test_discard_all_clears_dialog_tags_history_and_sentiment_R12():
    r = run(_session_with_context() + [ev("discard_all", T0 + 4 * SEC)])
    assert r.topics == [OPENED]
    st = r.state()
    assert st.sid is not None
    assert (st.dialog, st.intent) == (None, None)
    assert not st.tags and not st.hist and not st.sentiment


def test_discard_all_keeps_variables_and_auth_R12():
    r = run([ev("auth", T0, auth_profile="P"),
             ev("context", T0 + 1, variables=[{"name": "v", "value": 1}]),
             ev("discard_all", T0 + 2)], until=T0 + HOUR)
    assert only(r.closed)["cleared"]["variables"] == ["v"]


# --- R13 refresh -------------------------------------------------------------------------

def test_refresh_closes_clears_everything_and_opens_non_interactive_session_R13():
    r = run([ev("user_message", T0, intent="A"),
             ev("auth", T0 + SEC, auth_profile="Salesforce"),
             ev("auth", T0 + SEC, auth_profile="Jira"),
             ev("context", T0 + 2 * SEC, dialog={"intent": "A"}, tags=["t"], sentiment={"joy": 1},
                variables=[{"name": "zz", "value": 1},
                           {"name": "ttl", "value": 2, "ttl_s": 3600},
                           {"name": "sf", "value": 3, "ttl_s": 3600, "auth_profile": "Salesforce"}]),
             ev("refresh", T0 + 5 * MIN, event_id="rf", channel="web")])
    assert r.topics == [OPENED, CLOSED, OPENED]
    old = r.opened[0]["session_id"]
    closed, new = r.closed[0], r.opened[1]
    assert (closed["session_id"], closed["reason"], closed["closed_at"]) == (old, "refresh", T0 + 5 * MIN)
    assert closed["cleared"] == {"variables": ["sf", "ttl", "zz"],
                                 "auth_profiles": ["Jira", "Salesforce"], "dialog": True}
    assert closed["notified"] is False
    assert new == {"schema": "session-opened/1", "session_id": new["session_id"],
                   "app_id": "app-1", "user_id": "u-1", "opened_at": T0 + 5 * MIN,
                   "interactive": False, "developer": False, "channel": "web",
                   "trigger": "refresh", "trigger_event_id": "rf", "previous_session_id": old}
    st = r.state()
    assert not st.vars and not st.auth and not st.tags and not st.sentiment and st.dialog is None


def test_refresh_without_open_session_clears_surviving_key_state_R13():
    r = run([ev("auth", T0, auth_profile="P"),
             ev("context", T0 + 1, variables=[{"name": "keep", "value": 1, "ttl_s": 7200}])],
            until=T0 + 20 * MIN)
    assert r.state().auth == ["P"] and "keep" in r.state().vars
    r.feed(ev("refresh", T0 + 30 * MIN))
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert r.opened[1]["previous_session_id"] is None
    assert not r.state().auth and not r.state().vars
    # the refreshed session's own close has nothing left to clear
    r.feed(ev("user_message", T0 + 31 * MIN), ev("context", T0 + 32 * MIN, tags=["x"]))
    r.feed(ev("refresh", T0 + 33 * MIN))
    assert r.closed[-1]["cleared"] == {"variables": [], "auth_profiles": [], "dialog": False}


def test_refresh_in_continue_mode_closes_as_refresh_not_new_intent_R13_R7():
    r = run([ev("user_message", T0, intent="A"), ev("refresh", T0 + 30 * MIN)], settings=CONTINUE)
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert (r.closed[0]["reason"], r.closed[0]["closed_at"]) == ("refresh", T0 + 30 * MIN)
    assert r.opened[1]["previous_session_id"] == r.opened[0]["session_id"]


def test_refreshed_session_is_upgraded_by_next_user_message_R13_R2():
    r = run([ev("refresh", T0), ev("user_message", T0 + MIN)], until=T0 + HOUR)
    assert r.topics == [OPENED, UPGRADED, CLOSED]
    assert r.closed[0]["last_activity_at"] == T0 + MIN


def test_refresh_close_does_not_notify_R13_R17():
    settings = {"app-1": {"closure": {"behavior": "message", "message": "Bye", "channels": ["web"]}}}
    r = run([ev("user_message", T0), ev("refresh", T0 + MIN)], settings=settings)
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert r.closed[0]["notified"] is False


# --- R14 context -------------------------------------------------------------------------

def test_context_dialog_replaces_dialog_context_R14():
    r = run([ev("user_message", T0, intent="A"), ev("context", T0 + 1, dialog={"intent": "D", "x": 1}),
             ev("context", T0 + 2, dialog={"intent": "E"})])
    assert (r.state().dialog, r.state().intent) == ({"intent": "E"}, "E")


def test_context_tags_push_current_tags_to_historic_only_when_not_empty_R14():
    r = run([ev("user_message", T0), ev("context", T0 + 1, tags=[]), ev("context", T0 + 2, tags=["a"]),
             ev("context", T0 + 3, tags=["b", "c"])])
    st = r.state()
    assert st.tags == ["b", "c"]
    assert st.hist == [["a"]]


def test_context_sentiment_merges_tone_scores_R14():
    r = run([ev("user_message", T0), ev("context", T0 + 1, sentiment={"joy": 1, "fear": 0.2}),
             ev("context", T0 + 2, sentiment={"joy": 3, "anger": 2})])
    assert r.state().sentiment == {"joy": 3, "fear": 0.2, "anger": 2}


def test_context_variables_set_delete_and_ttl_R14():
    r = run([ev("user_message", T0),
             ev("context", T0 + SEC, variables=[{"name": "a", "value": 1},
                                                {"name": "b", "value": 2, "ttl_s": 600},
                                                {"name": "c", "value": 3}]),
             ev("context", T0 + 2 * SEC, variables=[{"name": "c", "delete": True},
                                                    {"name": "a", "value": 10}])])
    vars_ = r.state().vars
    assert set(vars_) == {"a", "b"}
    assert vars_["a"][0] == 10 and vars_["a"][1] is None
    assert vars_["b"][0] == 2 and vars_["b"][1] == T0 + SEC + 600 * SEC
    r.feed(ev("user_message", T0 + 5 * MIN))
    r.feed(ev("user_message", T0 + 5 * MIN + INACTIVITY))  # closes by R6, opens a new one
    assert r.closed[0]["cleared"]["variables"] == ["a"]       # b has its own TTL


def test_context_with_no_open_session_is_ignored_and_counted_R14():
    r = run([ev("context", T0, tags=["a"]),
             ev("user_message", T0 + MIN),
             ev("context", T0 + 30 * MIN, variables=[{"name": "v", "value": 1, "ttl_s": 99999}])],
            until=T0 + 40 * MIN)
    assert r.topics == [OPENED, CLOSED]
    assert r.stats["context_ignored"] == 2
    assert r.state() is None or not r.state().vars


def test_context_is_not_counted_as_user_or_agent_event_R14():
    r = run([ev("user_message", T0), ev("context", T0 + 1, tags=["a"]), ev("agent_message", T0 + 2)],
            until=T0 + HOUR)
    assert (r.closed[0]["user_events"], r.closed[0]["agent_events"]) == (1, 1)


def test_context_does_not_upgrade_non_interactive_session_R14_R2():
    r = run([ev("on_connect", T0), ev("context", T0 + 1, dialog={"intent": "X"})], until=T0 + HOUR)
    assert r.topics == [OPENED, CLOSED]
    assert r.closed[0]["interactive"] is False


# --- R14a auth ---------------------------------------------------------------------------

def test_auth_adds_profile_which_outlives_the_session_R14a():
    r = run([ev("auth", T0, auth_profile="Salesforce"), ev("auth", T0 + 1, auth_profile="Jira")],
            until=T0 + HOUR)
    assert r.closed[0]["cleared"]["auth_profiles"] == []
    assert r.state().auth == ["Salesforce", "Jira"]
    # the next session's proactive close with clear_auth_profiles clears them
    r.feed(ev("user_message", T0 + 2 * HOUR))
    r.feed(SetSettings("app-1", {"app_id": "app-1", "clear_auth_profiles": True}))
    r.feed(ev("user_message", T0 + 3 * HOUR))
    assert r.closed[1]["cleared"]["auth_profiles"] == ["Jira", "Salesforce"]
    assert not r.state().auth


def test_auth_is_a_user_event_that_opens_interactive_session_R14a_R1():
    r = run([ev("auth", T0, auth_profile="P")])
    assert only(r.opened)["interactive"] is True


def test_repeated_auth_keeps_one_entry_per_profile_R14a():
    r = run([ev("auth", T0, auth_profile="P"), ev("auth", T0 + 1, auth_profile="P")])
    assert r.state().auth == ["P"]


@pytest.mark.parametrize("close", ["new_intent", "refresh_keeps_nothing"])
def test_auth_profiles_survive_non_proactive_closes_R14a_R16(close):
    settings = {"app-1": {"mode": "continue_on_same_intent", "clear_auth_profiles": True}}
    if close == "new_intent":
        r = run([ev("auth", T0, auth_profile="P"), ev("user_message", T0 + 1, intent="A"),
                 ev("user_message", T0 + 30 * MIN, intent="B")], settings=settings)
        assert r.closed[0]["reason"] == "new_intent"
        assert r.closed[0]["cleared"]["auth_profiles"] == []
        assert r.state().auth == ["P"]
    else:
        r = run([ev("auth", T0, auth_profile="P"), ev("refresh", T0 + MIN)], settings=settings)
        assert r.closed[0]["cleared"]["auth_profiles"] == ["P"]
        assert not r.state().auth


def test_out_of_order_refresh_never_closes_before_the_session_opened_R13():
    # A refresh older than the session's opening event (delivered late) closes it at its
    # opening time, so closed_at >= opened_at always holds for billing (docs/semantics-decisions.md).
    r = run([ev("user_message", T0, intent="A"), ev("refresh", T0 - 30 * SEC, event_id="late")])
    assert r.topics == [OPENED, CLOSED, OPENED]
    closed = r.closed[0]
    assert (closed["reason"], closed["opened_at"], closed["closed_at"]) == ("refresh", T0, T0)
    assert r.opened[1]["opened_at"] == T0 - 30 * SEC
