"""R22 determinism and session ids, R23 output order, R24 billing blocks, R25 bounded state."""
from __future__ import annotations

import uuid

import pytest

from tests.builders import (CLOSED, HOUR, INACTIVITY, KEY, MIN, NOTIFICATION, OPENED, SEC, T0,
                            UPGRADED, Until, encode_outputs, ev, only, run)
from worker.domain import CoreConfig, Limits


# --- R22 Determinism ---------------------------------------------------------------------

def _sid(app="app-1", user="u-1", event_id="e-1", **kw):
    r = run([ev("user_message", kw.pop("ts", T0), app_id=app, user_id=user, event_id=event_id, **kw)])
    return only(r.opened)["session_id"]


def test_session_id_is_a_uuid5_of_app_user_and_opening_event_id_R22():
    sid = _sid()
    parsed = uuid.UUID(sid)
    assert str(parsed) == sid
    assert parsed.version == 5 and parsed.variant == uuid.RFC_4122
    # a function of (app_id, user_id, event_id) only
    assert _sid() == sid
    assert _sid(ts=T0 + HOUR, channel="sms", intent="X", developer=True) == sid
    assert len({sid, _sid(app="app-2"), _sid(user="u-2"), _sid(event_id="e-2")}) == 4


def test_session_id_components_are_not_ambiguous_when_concatenated_R22():
    # (app "a:b", user "c") and (app "a", user "b:c") are different partners (even though
    # their record keys "a:b:c" coincide): their session ids must differ
    assert _sid(app="a", user="b:c", event_id="e") != _sid(app="a:b", user="c", event_id="e")
    assert _sid(app="a", user="bc", event_id="e") != _sid(app="a", user="b", event_id="ce")


def test_session_id_does_not_depend_on_event_type_R22():
    r = run([ev("on_connect", T0, event_id="e-1")])
    assert only(r.opened)["session_id"] == _sid()


def test_closed_and_upgraded_carry_the_opened_session_id_R22():
    r = run([ev("on_connect", T0), ev("user_message", T0 + 1)], until=T0 + HOUR)
    sid = only(r.opened)["session_id"]
    assert only(r.upgraded)["session_id"] == sid and only(r.closed)["session_id"] == sid


def _log():
    return [ev("on_connect", T0, key="app-1:a", event_id="a1"),
            ev("user_message", T0 + MIN, key="app-1:b", event_id="b1", intent="X"),
            ev("user_message", T0 + 2 * MIN, key="app-1:a", event_id="a2"),
            ev("auth", T0 + 3 * MIN, key="app-1:b", event_id="b2", auth_profile="P"),
            ev("context", T0 + 4 * MIN, key="app-1:a", event_id="a3",
               variables=[{"name": "v", "value": 1}], dialog={"intent": "Y"}),
            ev("user_message", T0 + 40 * MIN, key="app-1:a", event_id="a4"),
            ev("refresh", T0 + 41 * MIN, key="app-1:b", event_id="b3")]


def test_same_log_twice_gives_byte_identical_outputs_R22():
    settings = {"app-1": {"clear_auth_profiles": True,
                          "closure": {"behavior": "message", "message": "Bye", "channels": ["web"]}}}
    one = run(_log(), settings=settings, until=T0 + 3 * HOUR)
    two = run(_log(), settings=settings, until=T0 + 3 * HOUR)
    assert len(one.outs) > 6
    assert encode_outputs(one.outs) == encode_outputs(two.outs)


def test_previous_session_id_is_null_when_the_clock_closed_the_session_R22_R6():
    by_clock = run([ev("user_message", T0, event_id="e-1"), Until(T0 + HOUR),
                    ev("user_message", T0 + HOUR, event_id="e-2")])
    by_event = run([ev("user_message", T0, event_id="e-1"), ev("user_message", T0 + HOUR, event_id="e-2")])
    assert by_clock.outs == by_event.outs
    assert by_clock.opened[1]["previous_session_id"] is None


# --- R23 Order ---------------------------------------------------------------------------

@pytest.mark.parametrize("settings,second", [
    ({"mode": "continue_on_same_intent"}, ev("user_message", T0 + HOUR, intent="B")),
    ({"mode": "legacy"}, ev("agent_message", T0 + HOUR)),
    ({}, ev("refresh", T0 + MIN)),
    ({}, ev("user_message", T0 + INACTIVITY)),
])
def test_replaced_session_closed_comes_before_new_session_opened_R23(settings, second):
    r = run([ev("user_message", T0, intent="A"), second], settings={"app-1": settings})
    assert r.topics == [OPENED, CLOSED, OPENED]
    assert r.closed[0]["session_id"] == r.opened[0]["session_id"]


def test_upgrade_comes_after_its_session_opened_R23():
    settings = {"app-1": {"mode": "legacy"}}
    r = run([ev("user_message", T0), ev("on_connect", T0 + HOUR), ev("user_message", T0 + HOUR + 1)],
            settings=settings)
    assert r.topics == [OPENED, CLOSED, OPENED, UPGRADED]
    assert r.upgraded[0]["session_id"] == r.opened[1]["session_id"]


def test_notification_comes_before_its_session_closed_R23_R17():
    settings = {"app-1": {"closure": {"behavior": "message", "message": "Bye", "channels": ["web"]}}}
    r = run([ev("user_message", T0), ev("user_message", T0 + HOUR)], settings=settings)
    assert r.topics == [OPENED, NOTIFICATION, CLOSED, OPENED]


def test_outputs_carry_the_input_key_R23():
    r = run([ev("on_connect", T0, key="app-9:user:with:colons"),
             ev("user_message", T0 + 1, key="app-9:user:with:colons")], until=T0 + HOUR)
    assert {k for _, k, _ in r.outs} == {"app-9:user:with:colons"}
    assert r.closed[0]["user_id"] == "user:with:colons"


# --- R24 Billing blocks ------------------------------------------------------------------

def test_31_minute_conversation_bills_3_blocks_R24():
    r = run([ev("user_message", T0), ev("user_message", T0 + 14 * MIN),
             ev("user_message", T0 + 28 * MIN), ev("user_message", T0 + 31 * MIN)], until=T0 + 2 * HOUR)
    closed = only(r.closed)
    assert (closed["last_activity_at"] - closed["opened_at"], closed["billing_blocks"]) == (31 * MIN, 3)


@pytest.mark.parametrize("length,blocks", [
    (0, 1), (1, 1), (15 * MIN, 1), (15 * MIN + 1, 2), (30 * MIN, 2), (30 * MIN + 1, 3), (60 * MIN, 4)])
def test_billing_blocks_are_max_1_ceil_length_over_15_minutes_R24(length, blocks):
    r = run([ev("user_message", T0), ev("user_message", T0 + length)],
            settings={"app-1": {"inactivity_minutes": 120}}, until=T0 + 5 * HOUR)
    assert only(r.closed)["billing_blocks"] == blocks


def test_upgraded_session_is_billed_from_its_opening_R24_R2():
    r = run([ev("on_connect", T0), ev("user_message", T0 + 14 * MIN),
             ev("user_message", T0 + 16 * MIN)], until=T0 + 2 * HOUR)
    closed = only(r.closed)
    assert (closed["opened_at"], closed["last_activity_at"], closed["billing_blocks"]) == (
        T0, T0 + 16 * MIN, 2)


@pytest.mark.parametrize("log", [
    [ev("on_connect", T0), ev("agent_message", T0 + 40 * MIN)],
    [ev("user_message", T0, developer=True), ev("user_message", T0 + 14 * MIN)],
])
def test_non_billable_sessions_bill_0_blocks_R24_R5(log):
    r = run(log, settings={"app-1": {"inactivity_minutes": 60}}, until=T0 + 3 * HOUR)
    closed = only(r.closed)
    assert (closed["billable"], closed["billing_blocks"]) == (False, 0)


def test_billing_block_is_a_worker_setting_R24():
    r = run([ev("user_message", T0), ev("user_message", T0 + 11 * MIN)],
            cfg=CoreConfig(billing_block_ms=10 * MIN), until=T0 + 2 * HOUR)
    assert only(r.closed)["billing_blocks"] == 2


def test_billing_counts_to_activity_not_close_time_R24():
    r = run([ev("user_message", T0), ev("agent_message", T0 + 14 * MIN)], until=T0 + 2 * HOUR)
    closed = only(r.closed)
    assert closed["closed_at"] == T0 + INACTIVITY and closed["billing_blocks"] == 1


# --- R25 Bounded state -------------------------------------------------------------------

def _cfg(**limits):
    return CoreConfig(limits=Limits(**limits))


def test_variables_are_bounded_oldest_dropped_and_counted_R25():
    variables = [{"name": f"v{i}", "value": i} for i in range(1, 6)]
    r = run([ev("user_message", T0), ev("context", T0 + 1, variables=variables[:3]),
             ev("context", T0 + 2, variables=variables[3:])], cfg=_cfg(variables=3))
    assert list(r.state().vars) == ["v3", "v4", "v5"]
    assert r.stats["dropped_variables"] == 2
    r.feed(Until(T0 + HOUR))
    assert only(r.closed)["cleared"]["variables"] == ["v3", "v4", "v5"]


def test_resetting_a_variable_makes_it_the_newest_R25():
    r = run([ev("user_message", T0),
             ev("context", T0 + 1, variables=[{"name": "a", "value": 1}, {"name": "b", "value": 2}]),
             ev("context", T0 + 2, variables=[{"name": "a", "value": 3}, {"name": "c", "value": 4}])],
            cfg=_cfg(variables=2))
    assert list(r.state().vars) == ["a", "c"]
    assert r.stats["dropped_variables"] == 1


def test_current_tags_are_bounded_R25():
    r = run([ev("user_message", T0), ev("context", T0 + 1, tags=["a", "b", "c", "d"])], cfg=_cfg(tags=2))
    assert r.state().tags == ["c", "d"]
    assert r.stats["dropped_tags"] == 2


def test_historic_tags_are_bounded_R25():
    r = run([ev("user_message", T0)] + [ev("context", T0 + i, tags=[f"t{i}"]) for i in range(1, 6)],
            cfg=_cfg(historic_tags=2))
    assert r.state().hist == [["t3"], ["t4"]]
    assert r.state().tags == ["t5"]
    assert r.stats["dropped_tags"] == 2


def test_auth_profiles_are_bounded_R25():
    r = run([ev("auth", T0 + i, auth_profile=p) for i, p in enumerate("ABCD")],
            cfg=_cfg(auth_profiles=2))
    assert r.state().auth == ["C", "D"]
    assert r.stats["dropped_auth_profiles"] == 2


def test_sentiment_tones_are_bounded_R25():
    r = run([ev("user_message", T0), ev("context", T0 + 1, sentiment={"a": 1, "b": 2}),
             ev("context", T0 + 2, sentiment={"c": 3})], cfg=_cfg(sentiment_tones=2))
    assert r.state().sentiment == {"b": 2, "c": 3}
    assert r.stats["dropped_tones"] == 1


def test_remembered_event_ids_are_bounded_R25_R21():
    r = run([ev("user_message", T0 + i, event_id=f"e{i}") for i in range(1, 5)], cfg=_cfg(event_ids=3))
    assert r.stats["dropped_event_ids"] == 1
    assert r.feed(ev("user_message", T0 + 4, event_id="e4")) == []   # still remembered
    assert r.stats["duplicates"] == 1
    r.feed(ev("user_message", T0 + 5, event_id="e1"))                # forgotten: applied again
    assert r.stats["duplicates"] == 1
    r.feed(Until(T0 + HOUR))
    assert only(r.closed)["user_events"] == 5


def test_default_limits_R25():
    limits = CoreConfig().limits
    assert limits.event_ids == 256
    r = run([ev("agent_message", T0 + i, event_id=f"e{i}") for i in range(300)])
    assert r.stats["dropped_event_ids"] == 300 - 256
    r.feed(ev("agent_message", T0, event_id="e0"))          # forgotten: applied again
    assert r.stats["duplicates"] == 0
    r.feed(ev("agent_message", T0 + 299, event_id="e299"))   # remembered
    assert r.stats["duplicates"] == 1
    r.feed(Until(T0 + HOUR))
    assert only(r.closed)["agent_events"] == 301
