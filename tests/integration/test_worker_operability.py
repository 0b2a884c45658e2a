"""An operable service, on the real broker: metrics move with the traffic, readiness
flips once recovered, the session lookup API shows context / discard / discard_all take
effect (R11, R12, R14), and user data never reaches the logs."""
from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.kafka_harness import (MIN, READY_LINE, consume_outputs, event_item, log_lines,
                                 now_ms, produce_lines, run, unique_env)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


# -- helpers ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def web_env(kafka, request, tmp_path) -> dict:
    """Like ``env``, with the web server on a free port."""
    return unique_env(request.node.name[:40].replace("_", "-").lower(), tmp_path,
                      WEB_PORT=str(free_port()))


def get(env: dict, path: str) -> tuple[int | None, str]:
    """(status, body) of GET ``path`` on the worker; (None, reason) when refused."""
    url = f"http://127.0.0.1:{env['WEB_PORT']}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except (urllib.error.URLError, ConnectionError) as err:
        return None, repr(err)


def session_path(app_id: str, user_id: str, local: bool = False) -> str:
    return (f"/sessions/{quote(app_id, safe='')}/{quote(user_id, safe='')}"
            + ("?local=1" if local else ""))


def wait_for(probe, timeout_s: float = 30.0, interval_s: float = 0.1, what: str = ""):
    """Poll ``probe()`` until it returns something truthy; returns it."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out waiting for {what or probe}: last {last!r}")


def wait_ready_http(env: dict, timeout_s: float = 60.0) -> None:
    wait_for(lambda: get(env, "/readyz")[0] == 200, timeout_s, what="/readyz 200")


def wait_view(env: dict, app_id: str, user_id: str, accept, timeout_s: float = 30.0) -> dict:
    """Poll the lookup until the view satisfies ``accept(view)``; returns the view."""
    def probe():
        status, body = get(env, session_path(app_id, user_id))
        if status == 200:
            view = json.loads(body)
            return view if accept(view) else None
        return None
    return wait_for(probe, timeout_s, what=f"a session view of {app_id}")


def metric_sum(text: str, sample: str, **labels: str) -> float:
    """Sum of the samples named ``sample`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def ev(n: int, app: str, user: str, ts: int, etype: str, **extra) -> dict:
    return event_item({"event_id": f"{app}-{user}-{n}", "app_id": app, "user_id": user,
                       "ts": ts, "type": etype, "channel": "web", **extra})


# -- tests -------------------------------------------------------------------------------
def test_metrics_count_a_scenario_of_opens_upgrade_refresh_close_and_dead_letter(
        web_env, workers):
    """After a small scenario the Prometheus counters moved by exactly what happened:
    3 opens (one by on_connect, one by user_message, one by refresh reopening), 1
    upgrade (R2), 1 close by refresh (R13), 1 dead letter ``not_json`` (R20)."""
    env = web_env
    worker = workers(env)
    worker.wait_ready()
    wait_ready_http(env)
    status, before = get(env, "/metrics")
    assert status == 200

    ts = now_ms() - MIN
    items = [
        ev(1, "met", "a", ts, "on_connect", action="run_message"),          # open
        ev(2, "met", "a", ts + 10, "user_message", intent="Book"),          # upgrade
        ev(3, "met", "b", ts + 20, "user_message"),                         # open
        {"topic": "conversation-events", "key": "met:a", "value_text": "{not json"},
        ev(4, "met", "a", ts + 30, "refresh"),                              # close + open
    ]
    run(produce_lines(env, log_lines(items)))

    def moved():
        status, text = get(env, "/metrics")
        return text if status == 200 and metric_sum(
            text, "sessions_events_consumed_total") - metric_sum(
            before, "sessions_events_consumed_total") >= 4 and metric_sum(
            text, "sessions_dead_letters_total") > metric_sum(
            before, "sessions_dead_letters_total") else None
    after = wait_for(moved, 30, what="counters to move")

    def delta(sample, **labels):
        return metric_sum(after, sample, **labels) - metric_sum(before, sample, **labels)

    assert delta("sessions_events_consumed_total", type="on_connect") == 1
    assert delta("sessions_events_consumed_total", type="user_message") == 2
    assert delta("sessions_events_consumed_total", type="refresh") == 1
    assert delta("sessions_events_consumed_total") == 4
    assert delta("sessions_opened_total") == 3
    assert delta("sessions_opened_total", interactive="true") == 1
    assert delta("sessions_upgraded_total") == 1
    assert delta("sessions_closed_total", reason="refresh") == 1
    assert delta("sessions_closed_total") == 1
    assert delta("sessions_dead_letters_total", reason="not_json") == 1
    assert delta("sessions_dead_letters_total") == 1
    assert metric_sum(after, "sessions_ready") == 1
    assert worker.stop() == 0
    stop_line = [line for line in worker.log().splitlines() if '"stopped: ' in line]
    assert stop_line and json.loads(stop_line[-1])["stats"]["worker"]["events"] == 4, \
        worker.log()[-2000:]


def test_readiness_is_503_until_recovered_then_200_while_health_is_200(web_env, workers):
    """/readyz from process start: refused or 503 first, never 200 before the worker
    logged its recovery, then 200 (and it consumes: an event is visible by lookup);
    /healthz answers 200 whenever the server is up."""
    env = web_env
    worker = workers(env)
    # (status, recovery logged by then); the worker logs its recovery in the same
    # synchronous step that makes it ready, so a 200 must find the line in the log
    seen: list[tuple[int | None, bool]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, _ = get(env, "/readyz")
        recovered = READY_LINE in worker.log()
        if not seen or seen[-1][0] != status:
            seen.append((status, recovered))
        if status == 200:
            break
        assert worker.proc.poll() is None, worker.log()[-3000:]
        time.sleep(0.02)
    statuses = [s for s, _ in seen]
    assert statuses[-1] == 200, seen
    assert statuses[0] in (None, 503), seen
    assert set(statuses[:-1]) <= {None, 503}, seen
    assert all(recovered for s, recovered in seen if s == 200), \
        "ready before the worker recovered its partitions"
    assert READY_LINE in worker.log()
    assert get(env, "/healthz") == (200, "ok\n")

    run(produce_lines(env, log_lines([ev(1, "rdy", "u1", now_ms() - MIN, "user_message")])))
    view = wait_view(env, "rdy", "u1", lambda v: v["session"] is not None)
    assert view["session"]["interactive"] is True
    assert worker.stop() == 0


def test_lookup_shows_context_then_discard_then_discard_all_R11_R12_R14(web_env, workers):
    """GET /sessions/{app}/{user}: after context events it shows intent, dialog, current
    and historic tags, merged sentiment, variable names with expiry and auth profile —
    never values; ``discard`` clears dialog and intent and restores the last historic
    tags (R11); ``discard_all`` clears tags and sentiment (R12); an unknown key is 404."""
    env = web_env
    worker = workers(env)
    worker.wait_ready()
    wait_ready_http(env)
    app, user = "look", "u/1 é"          # a user id that needs percent-encoding
    ts = now_ms() - MIN
    items = [
        ev(1, app, user, ts, "user_message", intent="Greet"),
        ev(2, app, user, ts + 10, "context", dialog={"intent": "Book", "step": 2},
           tags=["a", "b"], sentiment={"joy": 0.5},
           variables=[{"name": "cart", "value": "VALUE-NOT-SHOWN-1", "ttl_s": 3600},
                      {"name": "acct", "value": "VALUE-NOT-SHOWN-2", "auth_profile": "crm"}]),
        ev(3, app, user, ts + 20, "context", tags=["c"], sentiment={"anger": 0.25}),
    ]
    run(produce_lines(env, log_lines(items)))
    view = wait_view(env, app, user, lambda v: v["tags"] == ["c"])
    assert view["app_id"] == app and view["user_id"] == user
    assert isinstance(view["partition"], int)
    assert view["session"]["interactive"] is True and view["session"]["user_events"] == 1
    assert view["intent"] == "Book"
    assert view["dialog"] == {"intent": "Book", "step": 2}
    assert view["historic_tags"] == [["a", "b"]]
    assert view["sentiment"] == {"joy": 0.5, "anger": 0.25}
    assert view["variables"] == [
        {"name": "cart", "expires_at": ts + 10 + 3_600_000, "auth_profile": None},
        {"name": "acct", "expires_at": None, "auth_profile": "crm"}]
    _, raw = get(env, session_path(app, user))
    assert "VALUE-NOT-SHOWN" not in raw
    assert get(env, session_path(app, user, local=True))[0] == 200

    run(produce_lines(env, log_lines([ev(4, app, user, ts + 30, "discard")])))
    view = wait_view(env, app, user, lambda v: v["session"]["user_events"] == 2)
    assert view["dialog"] is None and view["intent"] is None              # R11
    assert view["tags"] == ["a", "b"] and view["historic_tags"] == []
    assert view["sentiment"] == {"joy": 0.5, "anger": 0.25}

    run(produce_lines(env, log_lines([ev(5, app, user, ts + 40, "discard_all")])))
    view = wait_view(env, app, user, lambda v: v["session"]["user_events"] == 3)
    assert view["tags"] == [] and view["historic_tags"] == []             # R12
    assert view["sentiment"] == {} and view["dialog"] is None and view["intent"] is None
    assert [v["name"] for v in view["variables"]] == ["cart", "acct"]

    for a, u in [(app, "nobody"), ("no-such-app", user)]:
        status, body = get(env, session_path(a, u))
        assert status == 404, body
        assert json.loads(body)["error"] == "not_found"
    assert worker.stop() == 0


CANARY = "CANARY-USER-TEXT-9f3a"


def test_debug_logs_hold_no_user_text_variable_values_or_raw_user_ids(kafka, tmp_path,
                                                                       workers):
    """With LOG_LEVEL=debug, events whose user text, variable value and user id carry a
    canary — including a rejected one and a lookup of that user — are processed (outputs
    published, lookup answers), yet neither the canary nor the raw user id appears in
    anything the worker wrote to stdout/stderr."""
    env = unique_env("canary", tmp_path, WEB_PORT=str(free_port()), LOG_LEVEL="debug")
    worker = workers(env)
    worker.wait_ready()
    wait_ready_http(env)
    user = f"{CANARY}-uid-5d1c"
    app = "canary"
    ts = now_ms() - MIN
    items = [
        ev(1, app, user, ts, "user_message", text=f"my card is {CANARY}", intent="Pay"),
        ev(2, app, user, ts + 10, "context",
           variables=[{"name": "card", "value": f"{CANARY}-value"}]),
        ev(3, app, user, ts + 20, "shout", text=CANARY),                     # dead letter
        {"topic": "conversation-events", "key": f"{app}:{user}",
         "value_text": f"{{{CANARY} not json"},                              # dead letter
        ev(4, app, user, ts + 30, "refresh"),
    ]
    run(produce_lines(env, log_lines(items)))
    outputs = run(consume_outputs(env, quiet_s=1, timeout_s=30, until=lambda out: sum(
        o.topic == "conversation-events-dlq" for o in out) >= 2 and any(
        o.topic == "session-closed" for o in out)))
    assert sum(o.topic == "session-opened" for o in outputs) == 2
    view = wait_view(env, app, user, lambda v: v["session"] is not None)
    assert view["user_id"] == user
    assert get(env, session_path(app, "someone-else"))[0] == 404
    assert worker.stop() == 0

    log = worker.log()
    assert '"level": "debug"' in log or '"level":"debug"' in log, "debug logging was off"
    assert CANARY not in log, [line for line in log.splitlines() if CANARY in line][:3]
    assert user not in log


def test_lookup_is_answered_by_any_worker_whichever_owns_the_key(kafka, tmp_path, workers):
    """Two workers share the partitions: a lookup sent to either one answers for every
    key (the owner is asked when the key is not local), while ``?local=1`` only answers
    for the keys of the partitions the worker owns itself."""
    env = unique_env("peers", tmp_path, WEB_PORT=str(free_port()))
    env2 = {**env, "WEB_PORT": str(free_port()), "STATE_DIR": str(tmp_path / "state2")}
    first, second = workers(env, "first"), workers(env2, "second")

    def split():
        owned = []
        for e in (env, env2):
            status, body = get(e, "/stats")
            if status != 200 or get(e, "/readyz")[0] != 200:
                return None
            owned.append(set(json.loads(body)["partitions"]))
        return owned if all(owned) and not owned[0] & owned[1] and \
            owned[0] | owned[1] == set(range(4)) else None
    wait_for(split, 60, 0.2, "the partitions to be split between the workers")

    ts = now_ms() - MIN
    users = [f"u{i}" for i in range(12)]
    run(produce_lines(env, log_lines(ev(i, "peer", u, ts + i, "user_message")
                                     for i, u in enumerate(users))))
    local_hits = {0: set(), 1: set()}
    for u in users:
        for n, e in enumerate((env, env2)):
            view = wait_view(e, "peer", u, lambda v: v["session"] is not None)
            assert view["user_id"] == u
            if get(e, session_path("peer", u, local=True))[0] == 200:
                local_hits[n].add(u)
    assert local_hits[0] and local_hits[1], "all keys on one worker: routing not exercised"
    assert local_hits[0] | local_hits[1] == set(users) and not local_hits[0] & local_hits[1]
    status, body = get(env2, session_path("peer", "nobody"))
    assert status == 404 and json.loads(body)["peers_asked"] == 1
    assert first.stop() == 0 and second.stop() == 0
