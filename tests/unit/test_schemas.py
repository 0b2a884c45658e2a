"""The JSON Schemas in schemas/ formalise CONTRACT.md; the AsyncAPI document ties them to topics."""
from __future__ import annotations

import base64
import copy
import json

import pytest
from jsonschema import Draft202012Validator, ValidationError

from tests.schema_check import (
    INPUT_SCHEMAS,
    OUTPUT_SCHEMAS,
    SCHEMA_DIR,
    load_schema,
    schema_files,
    validate_input,
    validate_output,
    validate_replay_line,
)

# --- Example records, copied from CONTRACT.md --------------------------------------------

EVENT = {
    "event_id": "e-42", "app_id": "app-1", "user_id": "u-7",
    "ts": 1764000000000, "type": "user_message", "channel": "web",
    "developer": False,
    "intent": "BookFlight", "input_valid": True,
}
SETTINGS = {
    "app_id": "app-1",
    "mode": "proactive",
    "inactivity_minutes": 15,
    "closure": {"behavior": "message", "message": "Your session has ended.", "channels": ["web", "slack"]},
    "clear_auth_profiles": False,
    "close_script": "koreUtil.ClearAuthProfiles(['Salesforce'])",
}
OPENED = {
    "schema": "session-opened/1", "session_id": "…", "app_id": "app-1", "user_id": "u-7",
    "opened_at": 1764000000000, "interactive": True, "developer": False, "channel": "web",
    "trigger": "user_message", "trigger_event_id": "e-42", "previous_session_id": None,
}
UPGRADED = {
    "schema": "session-upgraded/1", "session_id": "…", "app_id": "app-1", "user_id": "u-7",
    "upgraded_at": 1764000060000, "trigger_event_id": "e-43", "channel": "web",
}
CLOSED = {
    "schema": "session-closed/1", "session_id": "…", "app_id": "app-1", "user_id": "u-7",
    "opened_at": 1764000000000, "closed_at": 1764000960000, "last_activity_at": 1764000060000,
    "reason": "inactivity", "interactive": True, "developer": False, "billable": True,
    "channel": "web", "user_events": 3, "agent_events": 4,
    "cleared": {"variables": ["cart"], "auth_profiles": [], "dialog": True},
    "notified": False, "billing_blocks": 1,
}
NOTIFICATION = {
    "schema": "session-notification/1", "session_id": "…", "app_id": "app-1", "user_id": "u-7",
    "channel": "web", "text": "Your session has ended.", "ts": 1764000960000,
}
# The contract shows "…" for the base64 fields; these are the real encodings of a key and value.
DEAD_LETTER = {
    "schema": "dead-letter/1", "reason": "missing_field", "detail": "ts is required",
    "topic": "conversation-events", "partition": 3, "offset": 1812,
    "key_b64": base64.b64encode(b"app-1:u-7").decode(),
    "value_b64": base64.b64encode(b'{"event_id":"e-1"}').decode(),
}
OUTPUT_EXAMPLES = {
    "session-opened": OPENED,
    "session-upgraded": UPGRADED,
    "session-closed": CLOSED,
    "session-notifications": NOTIFICATION,
    "conversation-events-dlq": DEAD_LETTER,
}
OUTPUT_TOPICS = sorted(OUTPUT_EXAMPLES)


def changed(record: dict, **changes) -> dict:
    """A deep copy of ``record`` with fields set; a value of ``...`` removes the field."""
    new = copy.deepcopy(record)
    for name, value in changes.items():
        if value is ...:
            new.pop(name, None)
        else:
            new[name] = value
    return new


def rejects(check, *args) -> None:
    with pytest.raises(ValidationError):
        check(*args)


# --- The schema files themselves ---------------------------------------------------------


def test_there_is_a_schema_file_for_every_contract_record():
    expected = set(INPUT_SCHEMAS.values()) | set(OUTPUT_SCHEMAS.values()) | {"replay-record.json"}
    assert set(schema_files()) == expected


@pytest.mark.parametrize("filename", schema_files())
def test_schema_file_is_valid_draft_2020_12(filename):
    def no_duplicate_keys(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"duplicate keys in {filename}: {keys}"
        return dict(pairs)

    schema = json.loads((SCHEMA_DIR / filename).read_text(encoding="utf-8"), object_pairs_hook=no_duplicate_keys)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://schemas.conversation-sessions.local/{filename}"
    assert schema["title"] and schema["description"]


@pytest.mark.parametrize("topic", OUTPUT_TOPICS)
def test_output_schema_is_closed_and_requires_every_field(topic):
    schema = load_schema(OUTPUT_SCHEMAS[topic])
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"])
    assert "const" in schema["properties"]["schema"]


# --- Input events (R20) ------------------------------------------------------------------


def test_contract_example_event_is_valid():
    validate_input("conversation-events", EVENT)


@pytest.mark.parametrize("event", [
    {"event_id": "e-1", "app_id": "a", "user_id": "u", "ts": 1, "type": "agent_message", "channel": "sms"},
    changed(EVENT, type="on_connect", action="trigger_dialog", intent=None),
    changed(EVENT, type="auth", auth_profile="Salesforce"),
    changed(EVENT, type="refresh", intent=..., input_valid=...),
    changed(EVENT, type="context", dialog={"intent": "BookFlight", "step": 2}, tags=["vip"],
            sentiment={"angry": 0.5, "happy": 1}, variables=[
                {"name": "cart", "value": {"items": [1, 2]}},
                {"name": "token", "value": "x", "ttl_s": 3600, "auth_profile": "Salesforce"},
                {"name": "old", "delete": True},
            ]),
    changed(EVENT, type="context", dialog=None),
    changed(EVENT, some_future_field={"anything": True}),
], ids=["minimal", "on_connect", "auth", "refresh", "context", "context-dialog-null", "extra-field"])
def test_valid_events_are_accepted(event):
    """Extra fields are ignored: forward compatibility (CONTRACT.md)."""
    validate_input("conversation-events", event)


@pytest.mark.parametrize("field", ["event_id", "app_id", "user_id", "ts", "type", "channel"])
def test_event_missing_a_required_field_is_rejected(field):
    """R20: missing_field."""
    rejects(validate_input, "conversation-events", changed(EVENT, **{field: ...}))


@pytest.mark.parametrize("changes", [
    {"ts": "1764000000000"}, {"ts": 0}, {"ts": -5}, {"ts": 1.5}, {"ts": True},
    {"type": "user_msg"}, {"event_id": ""}, {"event_id": "e" * 129}, {"user_id": ""},
    {"app_id": "a" * 257}, {"channel": "c" * 65}, {"channel": 7}, {"developer": "no"},
    {"intent": 3}, {"input_valid": None},
    {"type": "on_connect"}, {"type": "on_connect", "action": "wave"},
    {"type": "auth"}, {"type": "auth", "auth_profile": None},
    {"type": "context", "dialog": "BookFlight"}, {"type": "context", "dialog": {"intent": 1}},
    {"type": "context", "tags": "vip"}, {"type": "context", "tags": [1]},
    {"type": "context", "sentiment": {"angry": "high"}},
    {"type": "context", "variables": {"cart": 1}},
    {"type": "context", "variables": [{"value": 1}]},
    {"type": "context", "variables": [{"name": "cart"}]},
    {"type": "context", "variables": [{"name": "", "value": 1}]},
    {"type": "context", "variables": [{"name": "cart", "value": 1, "ttl_s": 0}]},
    {"type": "context", "variables": [{"name": "cart", "value": 1, "delete": "yes"}]},
], ids=repr)
def test_event_with_a_bad_field_is_rejected(changes):
    """R20: bad_field / unknown_type; on_connect needs action, auth needs auth_profile."""
    rejects(validate_input, "conversation-events", changed(EVENT, **changes))


def test_event_that_is_not_an_object_is_rejected():
    """R20: not_object."""
    rejects(validate_input, "conversation-events", [EVENT])


# --- Settings (R19) ----------------------------------------------------------------------


@pytest.mark.parametrize("settings", [
    SETTINGS,
    {"app_id": "app-1"},
    changed(SETTINGS, inactivity_minutes=5, mode="legacy", close_script=None),
    changed(SETTINGS, inactivity_minutes=20160, mode="continue_on_same_intent"),
    changed(SETTINGS, closure={"behavior": "silent"}),
    changed(SETTINGS, future_setting=1),
], ids=["contract", "minimal", "min-bound", "max-bound", "silent", "extra-field"])
def test_valid_settings_are_accepted(settings):
    validate_input("session-settings", settings)


def test_settings_tombstone_is_accepted():
    """A tombstone resets the app to the defaults (CONTRACT.md)."""
    validate_input("session-settings", None)


@pytest.mark.parametrize("changes", [
    {"app_id": ...}, {"app_id": ""}, {"mode": "eager"},
    {"inactivity_minutes": 4}, {"inactivity_minutes": 20161}, {"inactivity_minutes": 15.5},
    {"inactivity_minutes": "15"},
    {"closure": {"behavior": "message"}}, {"closure": {"behavior": "message", "message": ""}},
    {"closure": {"behavior": "message", "message": "x" * 2001}}, {"closure": {"behavior": "loud"}},
    {"closure": {"behavior": "silent", "channels": "web"}}, {"closure": "silent"},
    {"clear_auth_profiles": "yes"}, {"close_script": 1},
], ids=repr)
def test_invalid_settings_are_rejected(changes):
    """R19: settings outside the allowed values are rejected whole."""
    rejects(validate_input, "session-settings", changed(SETTINGS, **changes))


# --- Outputs -----------------------------------------------------------------------------


@pytest.mark.parametrize("topic", OUTPUT_TOPICS)
def test_contract_example_output_is_valid(topic):
    validate_output(topic, OUTPUT_EXAMPLES[topic])


@pytest.mark.parametrize("topic", OUTPUT_TOPICS)
def test_output_with_an_extra_field_is_rejected(topic):
    rejects(validate_output, topic, changed(OUTPUT_EXAMPLES[topic], extra=1))


@pytest.mark.parametrize("topic,field", [(t, f) for t in OUTPUT_TOPICS for f in OUTPUT_EXAMPLES[t]])
def test_output_missing_a_field_is_rejected(topic, field):
    rejects(validate_output, topic, changed(OUTPUT_EXAMPLES[topic], **{field: ...}))


@pytest.mark.parametrize("topic", OUTPUT_TOPICS)
def test_output_with_another_schema_version_is_rejected(topic):
    record = OUTPUT_EXAMPLES[topic]
    rejects(validate_output, topic, changed(record, schema=record["schema"].replace("/1", "/2")))


def test_output_is_checked_against_its_own_topic():
    rejects(validate_output, "session-closed", OPENED)
    with pytest.raises(ValueError):
        validate_output("conversation-events", EVENT)


@pytest.mark.parametrize("opened", [
    changed(OPENED, previous_session_id="s-1"),
    changed(OPENED, trigger="refresh", interactive=False),
    changed(OPENED, trigger="on_connect", interactive=False, developer=True),
    changed(OPENED, trigger="discard_all"),
], ids=repr)
def test_valid_session_opened_variants_are_accepted(opened):
    validate_output("session-opened", opened)


@pytest.mark.parametrize("changes", [
    {"trigger": "context", "interactive": False},
    {"trigger": "agent_message"},
    {"trigger": "user_message", "interactive": False},
    {"opened_at": "1764000000000"}, {"previous_session_id": ""}, {"session_id": ""},
], ids=repr)
def test_bad_session_opened_is_rejected(changes):
    """R1: context never opens a session; interactive exactly when a user event opens it."""
    rejects(validate_output, "session-opened", changed(OPENED, **changes))


@pytest.mark.parametrize("closed", [
    changed(CLOSED, reason="refresh", notified=False),
    changed(CLOSED, notified=True),
    changed(CLOSED, developer=True, billable=False, billing_blocks=0),
    changed(CLOSED, interactive=False, billable=False, billing_blocks=0, user_events=0),
    changed(CLOSED, reason="expired", billing_blocks=3,
            cleared={"variables": [], "auth_profiles": ["A", "B"], "dialog": False}),
], ids=["refresh", "notified", "developer", "non-interactive", "expired"])
def test_valid_session_closed_variants_are_accepted(closed):
    validate_output("session-closed", closed)


@pytest.mark.parametrize("changes", [
    {"reason": "timeout"},
    {"billable": False},                                           # R5
    {"developer": True},                                           # R5
    {"interactive": False, "billable": False, "billing_blocks": 0},  # R1/R2: has user events
    {"billing_blocks": 0},                                         # R24: billable uses >= 1
    {"developer": True, "billable": False, "billing_blocks": 1},   # R24: not billable -> 0
    {"notified": True, "reason": "refresh"},                       # R17
    {"user_events": -1}, {"agent_events": 1.5}, {"closed_at": None},
    {"cleared": {"variables": ["cart"], "auth_profiles": []}},
    {"cleared": {"variables": ["cart", "cart"], "auth_profiles": [], "dialog": True}},
    {"cleared": {"variables": [], "auth_profiles": [], "dialog": True, "tags": []}},
], ids=repr)
def test_bad_session_closed_is_rejected(changes):
    """R5 billable = interactive and not developer; R24 billing blocks; R17 only inactivity notifies."""
    rejects(validate_output, "session-closed", changed(CLOSED, **changes))


@pytest.mark.parametrize("changes", [{"text": ""}, {"ts": 0}, {"channel": ""}], ids=repr)
def test_bad_notification_is_rejected(changes):
    rejects(validate_output, "session-notifications", changed(NOTIFICATION, **changes))


def test_dead_letter_of_a_keyless_tombstone_is_valid():
    """R20: key_b64 is null when the record had no key, value_b64 null for a tombstone."""
    validate_output("conversation-events-dlq", changed(DEAD_LETTER, reason="not_object", key_b64=None, value_b64=None))


@pytest.mark.parametrize("changes", [
    {"reason": "bad_json"}, {"partition": -1}, {"partition": None}, {"offset": -1},
    {"key_b64": "…"}, {"value_b64": "not base64!"}, {"detail": None}, {"topic": ""},
], ids=repr)
def test_bad_dead_letter_is_rejected(changes):
    rejects(validate_output, "conversation-events-dlq", changed(DEAD_LETTER, **changes))


# --- Replay JSON lines -------------------------------------------------------------------


@pytest.mark.parametrize("line", [
    {"topic": "conversation-events", "key": "app-1:u-7", "value": EVENT},
    {"topic": "conversation-events", "key": "app-1:u-7", "value": {"not": "an event"}},
    {"topic": "conversation-events", "key": "app-1:u-7", "value_text": "{not json"},
    {"topic": "session-settings", "key": "app-1", "value": SETTINGS},
    {"topic": "session-settings", "key": "app-1", "value": None},
] + [{"topic": t, "key": "app-1:u-7", "value": OUTPUT_EXAMPLES[t]} for t in OUTPUT_TOPICS], ids=repr)
def test_valid_replay_lines_are_accepted(line):
    """Input values are free-form (bad input is replayed too, R20); output values match their topic."""
    validate_replay_line(line)


@pytest.mark.parametrize("line", [
    {"topic": "conversation-events", "key": "app-1:u-7"},
    {"topic": "conversation-events", "key": "app-1:u-7", "value": EVENT, "value_text": "{}"},
    {"topic": "conversation-events", "key": "app-1:u-7", "value": "text"},
    {"topic": "conversation-events", "value": EVENT},
    {"topic": "other", "key": "k", "value": {}},
    {"topic": "session-opened", "key": "app-1:u-7", "value": CLOSED},
    {"topic": "session-closed", "key": "app-1:u-7", "value": changed(CLOSED, extra=1)},
    {"topic": "session-opened", "key": "app-1:u-7", "value": None},
    {"topic": "session-opened", "key": "app-1:u-7", "value_text": json.dumps(OPENED)},
], ids=repr)
def test_bad_replay_lines_are_rejected(line):
    rejects(validate_replay_line, line)


# --- AsyncAPI ----------------------------------------------------------------------------

TOPIC_SCHEMAS = {**INPUT_SCHEMAS, **OUTPUT_SCHEMAS}
TOPIC_ENV_VARS = ["TOPIC_EVENTS", "TOPIC_SETTINGS", "TOPIC_OPENED", "TOPIC_UPGRADED",
                  "TOPIC_CLOSED", "TOPIC_NOTIFICATIONS", "TOPIC_DLQ"]


@pytest.fixture(scope="module")
def asyncapi() -> dict:
    import yaml  # pyyaml: test dependency

    return yaml.safe_load((SCHEMA_DIR / "asyncapi.yaml").read_text(encoding="utf-8"))


def refs(node) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def resolve(doc: dict, ref: str):
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_asyncapi_references_every_schema_and_topic(asyncapi):
    assert asyncapi["asyncapi"] == "3.0.0"
    file_refs = {r.removeprefix("./") for r in refs(asyncapi) if not r.startswith("#")}
    assert file_refs == set(schema_files())
    addresses = {c["address"] for c in asyncapi["channels"].values()}
    assert addresses == set(TOPIC_SCHEMAS)


def test_asyncapi_channel_payload_is_its_topic_schema(asyncapi):
    for channel in asyncapi["channels"].values():
        (message,) = channel["messages"].values()
        message = resolve(asyncapi, message["$ref"])
        payload = message["payload"]
        assert payload["schemaFormat"] == "application/schema+json;version=draft-2020-12"
        assert payload["schema"]["$ref"] == "./" + TOPIC_SCHEMAS[channel["address"]]
        assert message["bindings"]["kafka"]["key"]["type"] == "string"


def test_asyncapi_receives_inputs_and_sends_outputs(asyncapi):
    actions = {}
    for operation in asyncapi["operations"].values():
        channel = resolve(asyncapi, operation["channel"]["$ref"])
        actions[channel["address"]] = operation["action"]
        for message in operation["messages"]:
            resolve(asyncapi, message["$ref"])
    assert actions == {**{t: "receive" for t in INPUT_SCHEMAS}, **{t: "send" for t in OUTPUT_SCHEMAS}}


def test_asyncapi_internal_refs_resolve(asyncapi):
    for ref in refs(asyncapi):
        if ref.startswith("#"):
            resolve(asyncapi, ref)
        else:
            assert (SCHEMA_DIR / ref).is_file(), ref


def test_asyncapi_names_the_server_and_topic_env_vars(asyncapi):
    (server,) = asyncapi["servers"].values()
    assert (server["host"], server["protocol"]) == ("localhost:9092", "kafka")
    for var in TOPIC_ENV_VARS:
        assert var in asyncapi["info"]["description"]
