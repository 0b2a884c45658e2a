"""R19 settings validation, R20 bad events (dead letters), R21 duplicates."""
from __future__ import annotations

import base64

import orjson
import pytest

from tests.builders import (CLOSED, DEAD_LETTER, DEDUPE, HOUR, INACTIVITY, KEY, LATENESS, MIN, NOW,
                            OPENED, SEC, T0, SetSettings, Until, ev, only, raw, replayer, run,
                            settings_value)
from worker.domain import CoreConfig, SettingsError, parse_settings
from worker.domain.close_script import parse_close_script, ScriptError

# --- R19 Settings ------------------------------------------------------------------------

INVALID_SETTINGS = {
    "unknown_mode": {"mode": "aggressive"},
    "mode_not_string": {"mode": 1},
    "inactivity_below_min": {"inactivity_minutes": 4},
    "inactivity_above_max": {"inactivity_minutes": 20_161},
    "inactivity_zero": {"inactivity_minutes": 0},
    "inactivity_float": {"inactivity_minutes": 15.5},
    "inactivity_integral_float": {"inactivity_minutes": 15.0},
    "inactivity_string": {"inactivity_minutes": "15"},
    "inactivity_bool": {"inactivity_minutes": True},
    "inactivity_null": {"inactivity_minutes": None},
    "behavior_unknown": {"closure": {"behavior": "loud", "message": "x"}},
    "message_without_text": {"closure": {"behavior": "message", "channels": ["web"]}},
    "message_empty_text": {"closure": {"behavior": "message", "message": "", "channels": ["web"]}},
    "message_too_long": {"closure": {"behavior": "message", "message": "x" * 2001}},
    "message_not_string": {"closure": {"behavior": "message", "message": 5}},
    "closure_not_object": {"closure": "message"},
    "channels_not_array": {"closure": {"behavior": "message", "message": "x", "channels": "web"}},
    "channels_not_strings": {"closure": {"behavior": "message", "message": "x", "channels": [1]}},
    "clear_auth_not_bool": {"clear_auth_profiles": "yes"},
    "script_not_string": {"close_script": 5},
    "script_eval": {"close_script": "eval('koreUtil.ClearAllAuthProfiles()')"},
    "script_unquoted_name": {"close_script": "koreUtil.ClearAuthProfiles(Salesforce)"},
    "script_bare_string_arg": {"close_script": "koreUtil.ClearAuthProfiles('Salesforce')"},
    "script_extra_call": {"close_script": "koreUtil.ClearAllAuthProfiles(); alert(1)"},
    "script_other_kore_call": {"close_script": "koreUtil.DeleteEverything()"},
    "script_wrong_case": {"close_script": "koreutil.clearAuthProfiles(['A'])"},
    "script_args_to_clear_all": {"close_script": "koreUtil.ClearAllAuthProfiles('A')"},
    "script_trailing_expression": {"close_script": "koreUtil.ClearAuthProfiles(['A']) + 1"},
    "script_two_calls_one_statement": {
        "close_script": "koreUtil.ClearAuthProfiles(['A'])koreUtil.ClearAllAuthProfiles()"},
    "script_empty_name": {"close_script": "koreUtil.ClearAuthProfiles([''])"},
    "script_escape_in_name": {"close_script": "koreUtil.ClearAuthProfiles(['a\\'b'])"},
    "script_unterminated": {"close_script": "koreUtil.ClearAuthProfiles(['A']"},
}


@pytest.mark.parametrize("case", sorted(INVALID_SETTINGS))
def test_invalid_settings_are_rejected_whole_with_reason_and_previous_kept_R19(case):
    rr = replayer()
    rr.settings("app-1", settings_value(inactivity_minutes=5))
    bad = settings_value(**{"inactivity_minutes": 30, **INVALID_SETTINGS[case]})
    bad_bytes = orjson.dumps(bad)
    out = rr.settings("app-1", bad_bytes)
    dead = only(out)
    assert dead[0] == DEAD_LETTER and dead[1] == "app-1"
    v = dead[2]
    assert v["reason"] == "bad_settings"
    assert isinstance(v["detail"], str) and len(v["detail"]) > 5
    assert (v["topic"], v["partition"], v["offset"]) == ("session-settings", 0, 1)
    assert base64.b64decode(v["key_b64"]) == b"app-1"
    assert base64.b64decode(v["value_b64"]) == bad_bytes
    # the app keeps its previous settings (5 minutes), not 30 and not the defaults
    rr.event(raw("user_message", T0))
    rr.until(T0 + 5 * MIN)
    assert only(rr.values(CLOSED))["closed_at"] == T0 + 5 * MIN


@pytest.mark.parametrize("case", sorted(INVALID_SETTINGS))
def test_parse_settings_raises_settings_error_R19(case):
    with pytest.raises(SettingsError):
        parse_settings(settings_value(**INVALID_SETTINGS[case]), "app-1", CoreConfig())


def test_settings_for_another_app_id_are_rejected_R19():
    rr = replayer()
    dead = only(rr.settings("app-1", settings_value("app-2", inactivity_minutes=5)))
    assert dead[2]["reason"] == "bad_settings"


@pytest.mark.parametrize("value", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_settings_that_are_not_a_json_object_are_rejected_R19(value):
    rr = replayer()
    assert only(rr.settings("app-1", value))[2]["reason"] == "bad_settings"


@pytest.mark.parametrize("script,clear_all,profiles", [
    ("koreUtil.ClearAuthProfiles(['Salesforce'])", False, ("Salesforce",)),
    ('koreUtil.ClearAuthProfiles(["Salesforce", \'Jira\'])', False, ("Jira", "Salesforce")),
    ("  koreUtil . ClearAuthProfiles ( [ 'A' , 'B' ] )  ", False, ("A", "B")),
    ("koreUtil.ClearAllAuthProfiles()", True, ()),
    ("koreUtil.ClearAuthProfiles(['A']);koreUtil.ClearAuthProfiles(['B'])\nkoreUtil.ClearAllAuthProfiles();",
     True, ("A", "B")),
    ("koreUtil.ClearAuthProfiles([])", False, ()),
    ("", False, ()),
])
def test_strict_close_script_parser_accepts_the_two_calls_R16_R19(script, clear_all, profiles):
    parsed = parse_close_script(script)
    assert (parsed.clear_all, parsed.profiles) == (clear_all, profiles)


@pytest.mark.parametrize("case", sorted(k for k in INVALID_SETTINGS if k.startswith("script_")
                                        and k != "script_not_string"))
def test_strict_close_script_parser_rejects_anything_else_R16_R19(case):
    with pytest.raises(ScriptError):
        parse_close_script(INVALID_SETTINGS[case]["close_script"])


def test_valid_settings_change_moves_open_deadlines_earlier_R19():
    r = run([ev("user_message", T0), ev("user_message", T0 + MIN, key="app-1:b")])
    assert r.feed(SetSettings("app-1", settings_value(inactivity_minutes=5))) == []
    assert r.feed(Until(T0 + 5 * MIN - 1)) == []
    r.feed(Until(T0 + 6 * MIN))
    assert [(c["user_id"], c["closed_at"]) for c in r.closed] == [("u-1", T0 + 5 * MIN),
                                                                   ("b", T0 + 6 * MIN)]


def test_valid_settings_change_moves_open_deadlines_later_R19():
    r = run([ev("user_message", T0), SetSettings("app-1", settings_value(inactivity_minutes=30))],
            until=T0 + 29 * MIN)
    assert r.closed == []
    r.feed(Until(T0 + 30 * MIN))
    assert only(r.closed)["closed_at"] == T0 + 30 * MIN


def test_shorter_inactivity_closes_overdue_sessions_at_once_at_their_new_deadline_R19():
    r = run([ev("user_message", T0), Until(T0 + 10 * MIN)])
    out = r.feed(SetSettings("app-1", settings_value(inactivity_minutes=5)))
    assert [t for t, _, _ in out] == [CLOSED]
    assert out[0][2]["closed_at"] == T0 + 5 * MIN


def test_settings_change_of_other_app_does_not_touch_sessions_R19():
    r = run([ev("user_message", T0), Until(T0 + 10 * MIN)])
    assert r.feed(SetSettings("app-2", settings_value("app-2", inactivity_minutes=5))) == []


def test_settings_tombstone_returns_to_defaults_R19():
    r = run([SetSettings("app-1", settings_value(inactivity_minutes=5)), ev("user_message", T0),
             SetSettings("app-1", None)], until=T0 + 14 * MIN)
    assert r.closed == []
    r.feed(Until(T0 + INACTIVITY))
    assert only(r.closed)["closed_at"] == T0 + INACTIVITY


def test_settings_tombstone_through_replayer_R19():
    rr = replayer()
    rr.settings("app-1", settings_value(mode="legacy"))
    assert rr.settings("app-1", None) == []
    rr.event(raw("user_message", T0))
    rr.until(T0 + HOUR)
    assert only(rr.values(CLOSED))["reason"] == "inactivity"


def test_omitted_settings_fields_take_defaults_not_previous_values_R19():
    r = run([SetSettings("app-1", settings_value(inactivity_minutes=5, mode="legacy")),
             SetSettings("app-1", settings_value(clear_auth_profiles=True)),
             ev("user_message", T0)], until=T0 + HOUR)
    assert only(r.closed)["closed_at"] == T0 + INACTIVITY


def test_mode_change_to_continue_stops_timer_close_R19_R7():
    r = run([ev("user_message", T0, intent="A"),
             SetSettings("app-1", settings_value(mode="continue_on_same_intent"))], until=T0 + HOUR)
    assert r.closed == []
    r.feed(SetSettings("app-1", settings_value(mode="proactive")))
    assert only(r.closed)["closed_at"] == T0 + INACTIVITY


# --- R20 Bad events ----------------------------------------------------------------------

def _good(**over):
    value = raw("user_message", T0, event_id="e-1")
    value.update(over)
    return value


def _without(name):
    value = _good()
    del value[name]
    return value


BAD_EVENTS = [
    # (id, key, value bytes, reason)
    ("not_json", KEY, b"{not json", "not_json"),
    ("not_utf8", KEY, b'{"event_id": "\xff\xfe"}', "not_json"),
    ("empty", KEY, b"", "not_json"),
    ("array", KEY, b"[1, 2, 3]", "not_object"),
    ("string", KEY, b'"hello"', "not_object"),
    ("number", KEY, b"42", "not_object"),
    ("no_event_id", KEY, _without("event_id"), "missing_field"),
    ("no_app_id", KEY, _without("app_id"), "missing_field"),
    ("no_user_id", KEY, _without("user_id"), "missing_field"),
    ("no_ts", KEY, _without("ts"), "missing_field"),
    ("no_type", KEY, _without("type"), "missing_field"),
    ("no_channel", KEY, _without("channel"), "missing_field"),
    ("on_connect_no_action", KEY, raw("on_connect", T0, action=None), "missing_field"),
    ("auth_no_profile", KEY, raw("auth", T0, auth_profile=None), "missing_field"),
    ("ts_string", KEY, _good(ts="1764000000000"), "bad_field"),
    ("ts_float", KEY, _good(ts=1764000000000.5), "bad_field"),
    ("ts_zero", KEY, _good(ts=0), "bad_field"),
    ("ts_negative", KEY, _good(ts=-5), "bad_field"),
    ("ts_bool", KEY, _good(ts=True), "bad_field"),
    ("event_id_empty", KEY, _good(event_id=""), "bad_field"),
    ("event_id_too_long", KEY, _good(event_id="x" * 129), "bad_field"),
    ("event_id_number", KEY, _good(event_id=7), "bad_field"),
    ("channel_too_long", KEY, _good(channel="c" * 65), "bad_field"),
    ("developer_string", KEY, _good(developer="yes"), "bad_field"),
    ("intent_number", KEY, _good(intent=5), "bad_field"),
    ("input_valid_string", KEY, _good(input_valid="no"), "bad_field"),
    ("type_number", KEY, _good(type=3), "bad_field"),
    ("bad_action", KEY, raw("on_connect", T0, action="dance"), "bad_field"),
    ("tags_not_strings", KEY, raw("context", T0, tags=[1]), "bad_field"),
    ("sentiment_not_numbers", KEY, raw("context", T0, sentiment={"joy": "high"}), "bad_field"),
    ("dialog_not_object", KEY, raw("context", T0, dialog="x"), "bad_field"),
    ("variables_not_array", KEY, raw("context", T0, variables={"a": 1}), "bad_field"),
    ("variable_ttl_negative", KEY, raw("context", T0, variables=[{"name": "a", "ttl_s": -1}]), "bad_field"),
    ("unknown_type", KEY, _good(type="typing"), "unknown_type"),
    ("key_other_user", "app-1:u-2", _good(), "key_mismatch"),
    ("key_missing", None, _good(), "key_mismatch"),
    ("key_app_only", "app-1", _good(), "key_mismatch"),
    ("too_large", KEY, _good(padding="x" * (64 * 1024)), "too_large"),
    ("future_skew", KEY, _good(ts=NOW + HOUR + 1), "bad_field"),
]


@pytest.mark.parametrize("case,key,value,reason", BAD_EVENTS, ids=[c[0] for c in BAD_EVENTS])
def test_bad_event_goes_to_dead_letter_with_reason_and_original_bytes_R20(case, key, value, reason):
    rr = replayer()
    rr.event(raw("user_message", T0, key="app-1:other"))      # offset 0, a good record
    value_bytes = value if isinstance(value, bytes) else orjson.dumps(value)
    out = rr.event(value_bytes, key=key)                      # offset 1
    topic, out_key, dead = only(out)
    assert topic == DEAD_LETTER
    assert out_key == (key or "")
    assert dead == {"schema": "dead-letter/1", "reason": reason, "detail": dead["detail"],
                    "topic": "conversation-events", "partition": 0, "offset": 1,
                    "key_b64": base64.b64encode(key.encode()).decode() if key else None,
                    "value_b64": base64.b64encode(value_bytes).decode()}
    assert dead["detail"]
    assert rr.part.states.keys() == {"app-1:other"}          # changed no state


def test_record_with_no_value_is_a_dead_letter_R20():
    rr = replayer()
    dead = only(rr.event(None, key=KEY))[2]
    assert (dead["reason"], dead["value_b64"]) == ("not_json", None)


def test_future_skew_limit_is_inclusive_and_configurable_R20():
    rr = replayer()
    assert [t for t, _, _ in rr.event(_good(ts=NOW + HOUR))] == [OPENED]
    rr = replayer(future_skew_ms=MIN)
    assert only(rr.event(_good(ts=NOW + MIN + 1)))[2]["reason"] == "bad_field"


def test_old_timestamps_are_accepted_R20():
    rr = replayer()
    assert [t for t, _, _ in rr.event(_good(ts=1))] == [OPENED]


def test_rejected_records_do_not_move_the_clock_R20_R10():
    rr = replayer()
    rr.event(raw("user_message", T0))
    clock = rr.part.clock()
    bad = [_good(ts=NOW + 2 * HOUR, user_id="x"),                 # future skew, other key
           _good(ts=T0 + HOUR, channel=None),                     # missing field, far ahead
           _good(ts=T0 + HOUR, type="typing")]
    for value in bad:
        key = f"{value['app_id']}:{value['user_id']}"
        assert only(rr.event(value, key=key))[0] == DEAD_LETTER
    rr.event(_good(ts=T0 + HOUR), key="app-1:wrong")              # key mismatch
    assert rr.part.clock() == clock
    assert rr.values(CLOSED) == []
    # the worker keeps going: a good record afterwards is processed normally
    rr.event(raw("agent_message", T0 + MIN, key="app-1:u-2"))
    assert [t for t, _, _ in rr.outs if t != DEAD_LETTER] == [OPENED, OPENED]


def test_extra_fields_are_ignored_R20():
    rr = replayer()
    out = rr.event(_good(extra={"nested": [1, 2]}, another="x"))
    assert [t for t, _, _ in out] == [OPENED]


# --- R21 Duplicates ----------------------------------------------------------------------

def test_duplicate_event_changes_nothing_and_emits_nothing_R21():
    first = ev("user_message", T0, event_id="e-1", intent="A")
    r = run([first, ev("agent_message", T0 + MIN, event_id="e-2")])
    before = r.state().__repr__()
    assert r.feed(ev("user_message", T0 + 2 * MIN, event_id="e-1", intent="B")) == []  # same id
    assert r.feed(ev("agent_message", T0 + MIN, event_id="e-2")) == []
    assert repr(r.state()) == before
    assert r.stats["duplicates"] == 2
    r.feed(Until(T0 + HOUR))
    closed = only(r.closed)
    assert (closed["user_events"], closed["agent_events"], closed["last_activity_at"]) == (1, 1, T0)


def test_duplicate_ids_are_per_key_R21():
    r = run([ev("user_message", T0, event_id="same", key="app-1:a"),
             ev("user_message", T0, event_id="same", key="app-1:b")])
    assert r.topics == [OPENED, OPENED]


def test_duplicate_after_close_within_dedupe_window_opens_no_phantom_session_R21():
    r = run([ev("user_message", T0, event_id="e-1")], until=T0 + INACTIVITY + DEDUPE - 1)
    assert r.topics == [OPENED, CLOSED]
    assert r.feed(ev("user_message", T0, event_id="e-1")) == []
    assert r.topics == [OPENED, CLOSED]


def test_duplicate_of_the_closing_event_after_R6_close_is_ignored_R21():
    r = run([ev("user_message", T0, event_id="e-1"), ev("user_message", T0 + HOUR, event_id="e-2")])
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert r.feed(ev("user_message", T0, event_id="e-1"), ev("user_message", T0 + HOUR, event_id="e-2")) == []


def test_retry_after_dedupe_window_is_a_late_session_that_closes_at_its_deadline_R21():
    r = run([ev("user_message", T0, event_id="e-1")], until=T0 + INACTIVITY + DEDUPE)
    assert r.state() is None                       # nothing left to remember
    out = r.feed(ev("user_message", T0, event_id="e-1"))
    assert [t for t, _, _ in out] == [OPENED, CLOSED]   # already due: closes at once
    assert out[1][2]["closed_at"] == T0 + INACTIVITY
    assert out[1][2]["reason"] == "inactivity"


def test_late_session_closes_once_the_clock_passes_its_deadline_R21():
    # the retry's deadline (T0+62m+15m) lies ahead of the clock (T0+75m): it stays open
    r = run([ev("user_message", T0, event_id="e-1")], until=T0 + INACTIVITY + DEDUPE)
    assert r.state() is None
    out = r.feed(ev("user_message", T0 + 62 * MIN, event_id="e-1"))
    assert [t for t, _, _ in out] == [OPENED]
    assert (out[0][2]["trigger_event_id"], out[0][2]["opened_at"]) == ("e-1", T0 + 62 * MIN)
    assert r.feed(Until(T0 + 77 * MIN - 1)) == []
    closed = r.feed(Until(T0 + 77 * MIN))
    assert [t for t, _, _ in closed] == [CLOSED]
    assert closed[0][2]["closed_at"] == T0 + 77 * MIN


def test_dedupe_window_is_a_worker_setting_R21():
    cfg = CoreConfig(dedupe_window_ms=5 * MIN)
    r = run([ev("user_message", T0, event_id="e-1")], cfg=cfg, until=T0 + INACTIVITY + 5 * MIN - 1)
    assert r.feed(ev("user_message", T0, event_id="e-1")) == []
    r.feed(Until(T0 + INACTIVITY + 5 * MIN))
    assert len(r.feed(ev("user_message", T0, event_id="e-1"))) == 2


def test_duplicate_context_event_is_not_applied_twice_R21_R14():
    c = ev("context", T0 + 1, event_id="c-1", tags=["a"])
    r = run([ev("user_message", T0), c, ev("context", T0 + 2, tags=["b"]),
             ev("context", T0 + 1, event_id="c-1", tags=["a"])])
    assert r.state().tags == ["b"] and r.state().hist == [["a"]]


@pytest.mark.parametrize("script,profiles", [
    ("koreUtil.ClearAuthProfiles(['Acme, Inc'])", ("Acme, Inc",)),
    ("koreUtil.ClearAuthProfiles(['sales;eu'])", ("sales;eu",)),
    ("koreUtil.ClearAuthProfiles([\"x]y\"])", ("x]y",)),
])
def test_close_script_quoted_names_may_contain_separators_R16_R19(script, profiles):
    # one allowed call with a quoted profile name is valid (R16), so the settings stand (R19)
    parsed = parse_close_script(script)
    assert (parsed.clear_all, parsed.profiles) == (False, profiles)


def test_ignored_context_event_id_is_not_remembered_R21_R14():
    # decision: a context with no open session is ignored whole, its id included
    r = run([ev("context", T0, event_id="c-1", tags=["a"]), ev("user_message", T0 + 1),
             ev("context", T0 + 2, event_id="c-1", tags=["a"])])
    assert r.stats["duplicates"] == 0
    assert r.state().tags == ["a"]


def test_duplicate_with_ts_past_the_deadline_does_not_close_the_session_R21_R6():
    # decision: the duplicate check comes first; the clock closes the session as usual
    cfg = CoreConfig(lateness_ms=30 * SEC)
    r = run([ev("user_message", T0), ev("agent_message", T0 + 5 * MIN + SEC, event_id="a-1"),
             SetSettings("app-1", settings_value(inactivity_minutes=5))], cfg=cfg)
    assert r.closed == []                        # clock at T0+4m31s, deadline now T0+5m
    assert r.feed(ev("agent_message", T0 + 5 * MIN + SEC, event_id="a-1")) == []
    r.feed(Until(T0 + 5 * MIN))
    assert only(r.closed)["closed_at"] == T0 + 5 * MIN
