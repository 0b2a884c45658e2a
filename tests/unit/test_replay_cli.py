"""``python -m worker replay`` end to end, as a subprocess (R10, R19, R20, R22)."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders import HOUR, INACTIVITY, LATENESS, MIN, T0, raw, settings_value
from tests.schema_check import validate_replay_line

ROOT = Path(__file__).resolve().parents[2]
EVENTS = "conversation-events"
SETTINGS = "session-settings"


def line(value: dict | None = None, *, topic: str = EVENTS, key: str | None = None,
         value_text: str | None = None) -> str:
    rec: dict = {"topic": topic}
    if key is None:
        key = f"{value['app_id']}:{value['user_id']}" if topic == EVENTS else value["app_id"]
    rec["key"] = key
    if value_text is not None:
        rec["value_text"] = value_text
    else:
        rec["value"] = value
    validate_replay_line(rec)                      # our input lines are valid too
    return json.dumps(rec)


def replay(lines: list[str], *args: str, tmp_path: Path | None = None, stdin: bool = False):
    text = "\n".join(lines) + "\n"
    if stdin:
        cmd = [sys.executable, "-m", "worker", "replay", *args, "-"]
        proc = subprocess.run(cmd, input=text.encode(), capture_output=True, cwd=ROOT, timeout=60)
    else:
        path = tmp_path / "in.jsonl"
        path.write_text(text, encoding="utf-8")
        cmd = [sys.executable, "-m", "worker", "replay", *args, str(path)]
        proc = subprocess.run(cmd, capture_output=True, cwd=ROOT, timeout=60)
    return proc


def outputs(proc) -> list[dict]:
    assert proc.returncode == 0, proc.stderr.decode()
    out = [json.loads(x) for x in proc.stdout.decode().splitlines() if x.strip()]
    for rec in out:
        validate_replay_line(rec)
    return out


def topics(out):
    return [r["topic"] for r in out]


BASIC = [
    line(raw("on_connect", T0, event_id="e1")),
    line(raw("user_message", T0 + MIN, event_id="e2", intent="A")),
    line(raw("agent_message", T0 + 2 * MIN, event_id="e3")),
]


def test_replay_file_emits_valid_output_lines_R22(tmp_path):
    out = outputs(replay(BASIC, tmp_path=tmp_path))
    assert topics(out) == ["session-opened", "session-upgraded"]
    assert {r["key"] for r in out} == {"app-1:u-1"}
    assert out[0]["value"]["trigger_event_id"] == "e1"
    assert out[1]["value"]["upgraded_at"] == T0 + MIN


def test_replay_reads_stdin_with_dash(tmp_path):
    from_file = replay(BASIC, tmp_path=tmp_path)
    from_stdin = replay(BASIC, stdin=True)
    assert outputs(from_stdin) == outputs(from_file)
    assert from_stdin.stdout == from_file.stdout


def test_replay_is_deterministic_byte_for_byte_R22(tmp_path):
    a = replay(BASIC, "--until", str(T0 + HOUR), tmp_path=tmp_path)
    b = replay(BASIC, "--until", str(T0 + HOUR), stdin=True)
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout and a.stdout


def test_until_moves_the_clock_to_ts_R10(tmp_path):
    deadline = T0 + MIN + INACTIVITY
    out = outputs(replay(BASIC, "--until", str(deadline - 1), tmp_path=tmp_path))
    assert "session-closed" not in topics(out)
    out = outputs(replay(BASIC, "--until", str(deadline), tmp_path=tmp_path))
    assert topics(out) == ["session-opened", "session-upgraded", "session-closed"]
    closed = out[-1]["value"]
    assert (closed["reason"], closed["closed_at"], closed["last_activity_at"]) == (
        "inactivity", deadline, T0 + MIN)


def test_without_until_the_clock_is_stream_time_minus_lateness_R10(tmp_path):
    lines = [line(raw("user_message", T0, key="app-1:a")),
             line(raw("user_message", T0 + INACTIVITY + LATENESS - 1, key="app-1:b"))]
    assert topics(outputs(replay(lines, tmp_path=tmp_path))) == ["session-opened"] * 2
    lines.append(line(raw("user_message", T0 + INACTIVITY + LATENESS, key="app-1:c")))
    out = outputs(replay(lines, tmp_path=tmp_path))
    assert topics(out) == ["session-opened", "session-opened", "session-closed", "session-opened"]
    assert out[2]["key"] == "app-1:a"


def test_lateness_ms_option_R10(tmp_path):
    lines = [line(raw("user_message", T0, key="app-1:a")),
             line(raw("user_message", T0 + INACTIVITY + 30_000, key="app-1:b"))]
    assert "session-closed" in topics(outputs(replay(lines, tmp_path=tmp_path)))
    out = outputs(replay(lines, "--lateness-ms", "60000", tmp_path=tmp_path))
    assert "session-closed" not in topics(out)
    out = outputs(replay(lines, "--lateness-ms", "0", tmp_path=tmp_path))
    assert "session-closed" in topics(out)


def test_malformed_value_text_goes_to_dead_letters_with_line_offset_R20(tmp_path):
    good = raw("user_message", T0, event_id="e1")
    lines = [
        line(good),                                                            # offset 0
        line(key="app-1:u-1", value_text="{not json"),                         # offset 1
        line(key="app-1:u-1", value_text="[1, 2]"),                            # offset 2
        line(key="app-1:u-1", value_text=json.dumps({**good, "ts": "soon"})),  # offset 3
        line(key="app-1:u-1", value_text=json.dumps({**good, "type": "typing"})),  # offset 4
        line(key="app-1:u-9", value_text=json.dumps(good)),                    # offset 5
        line(raw("agent_message", T0 + 1, event_id="e2")),                     # offset 6
        line(key="app-1:u-1", value_text=json.dumps({k: v for k, v in good.items() if k != "ts"})),
    ]
    out = outputs(replay(lines, tmp_path=tmp_path))
    dead = [r for r in out if r["topic"] == "conversation-events-dlq"]
    assert [(d["value"]["offset"], d["value"]["reason"]) for d in dead] == [
        (1, "not_json"), (2, "not_object"), (3, "bad_field"), (4, "unknown_type"),
        (5, "key_mismatch"), (7, "missing_field")]
    for d in dead:
        v = d["value"]
        assert (v["topic"], v["partition"]) == (EVENTS, 0)
        original = json.loads(lines[v["offset"]])
        assert base64.b64decode(v["value_b64"]).decode() == original["value_text"]
        assert base64.b64decode(v["key_b64"]).decode() == original["key"] == d["key"]
    assert [r["topic"] for r in out if r["topic"] != "conversation-events-dlq"] == ["session-opened"]


def test_blank_lines_are_not_records_and_do_not_take_offsets(tmp_path):
    lines = ["", line(key="app-1:u-1", value_text="oops"), "   ", line(key="app-1:u-1", value_text="x")]
    out = outputs(replay(lines, tmp_path=tmp_path))
    assert [r["value"]["offset"] for r in out] == [0, 1]


def test_settings_and_tombstone_through_replay_R19(tmp_path):
    app_settings = line(settings_value(inactivity_minutes=5), topic=SETTINGS)
    tombstone = line(None, topic=SETTINGS, key="app-1")
    event = line(raw("user_message", T0))
    until = ("--until", str(T0 + HOUR))
    out = outputs(replay([app_settings, event], *until, tmp_path=tmp_path))
    assert out[-1]["value"]["closed_at"] == T0 + 5 * MIN
    out = outputs(replay([app_settings, tombstone, event], *until, tmp_path=tmp_path))
    assert out[-1]["value"]["closed_at"] == T0 + INACTIVITY


def test_bad_settings_go_to_dead_letters_and_keep_previous_R19(tmp_path):
    lines = [line(settings_value(inactivity_minutes=5), topic=SETTINGS),
             line(settings_value(inactivity_minutes=30, close_script="eval('x')"), topic=SETTINGS),
             line(key="app-1", topic=SETTINGS, value_text="{nope"),
             line(raw("user_message", T0))]
    out = outputs(replay(lines, "--until", str(T0 + HOUR), tmp_path=tmp_path))
    assert topics(out) == ["conversation-events-dlq", "conversation-events-dlq",
                           "session-opened", "session-closed"]
    assert [(r["value"]["reason"], r["value"]["offset"], r["value"]["topic"], r["key"])
            for r in out[:2]] == [("bad_settings", 1, SETTINGS, "app-1"),
                                  ("bad_settings", 2, SETTINGS, "app-1")]
    assert out[-1]["value"]["closed_at"] == T0 + 5 * MIN


def test_malformed_input_line_fails_with_exit_2_and_line_number(tmp_path):
    proc = replay([line(raw("user_message", T0)), "this is not json"], tmp_path=tmp_path)
    assert proc.returncode == 2
    assert b"line 2" in proc.stderr


@pytest.mark.parametrize("bad_line", ['{"key": "k", "value": {}}', '[1]',
                                      '{"topic": "conversation-events", "key": "k", "value_text": 5}'])
def test_input_lines_that_are_not_records_fail_cleanly(tmp_path, bad_line):
    proc = replay([bad_line], tmp_path=tmp_path)
    assert proc.returncode == 2 and proc.stderr


def test_unknown_topic_fails_cleanly(tmp_path):
    proc = replay(['{"topic": "elsewhere", "key": "k", "value": {}}'], tmp_path=tmp_path)
    assert proc.returncode == 2 and proc.stderr
