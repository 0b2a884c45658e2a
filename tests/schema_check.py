"""Validate records against the JSON Schemas in ``schemas/`` (CONTRACT.md).

Other tests use this to check real worker outputs::

    from tests.schema_check import validate_output
    validate_output("session-closed", record)   # raises jsonschema.ValidationError

Topic names are the contract's default names (the worker can rename topics by env vars;
tests pass the logical, default name).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

INPUT_SCHEMAS: dict[str, str] = {
    "conversation-events": "conversation-event.json",
    "session-settings": "session-settings.json",
}
OUTPUT_SCHEMAS: dict[str, str] = {
    "session-opened": "session-opened.json",
    "session-upgraded": "session-upgraded.json",
    "session-closed": "session-closed.json",
    "session-notifications": "session-notification.json",
    "conversation-events-dlq": "dead-letter.json",
}
REPLAY_SCHEMA = "replay-record.json"


def load_schema(filename: str) -> dict[str, Any]:
    with open(SCHEMA_DIR / filename, encoding="utf-8") as f:
        return json.load(f)


def schema_files() -> list[str]:
    """Every JSON Schema file in schemas/, sorted."""
    return sorted(p.name for p in SCHEMA_DIR.glob("*.json"))


@lru_cache(maxsize=1)
def registry() -> Registry:
    """All schema files, by $id, so that relative $refs between them resolve."""
    resources = []
    for name in schema_files():
        contents = load_schema(name)
        resources.append((contents["$id"], Resource.from_contents(contents)))
    return Registry().with_resources(resources)


@lru_cache(maxsize=None)
def validator(filename: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(filename), registry=registry())


def validate_output(topic: str, value: dict) -> None:
    """Raise jsonschema.ValidationError unless ``value`` is a valid record for output ``topic``."""
    try:
        filename = OUTPUT_SCHEMAS[topic]
    except KeyError:
        raise ValueError(f"not an output topic: {topic!r} (known: {sorted(OUTPUT_SCHEMAS)})") from None
    validator(filename).validate(value)


def validate_input(topic: str, value: dict | None) -> None:
    """Raise jsonschema.ValidationError unless ``value`` is a valid record for input ``topic``.

    ``None`` is a settings tombstone (back to defaults) and is valid on session-settings only.
    """
    try:
        filename = INPUT_SCHEMAS[topic]
    except KeyError:
        raise ValueError(f"not an input topic: {topic!r} (known: {sorted(INPUT_SCHEMAS)})") from None
    if value is None and topic == "session-settings":
        return
    validator(filename).validate(value)


def validate_replay_line(line: dict) -> None:
    """Raise jsonschema.ValidationError unless ``line`` is a valid replay JSON-lines record."""
    validator(REPLAY_SCHEMA).validate(line)
