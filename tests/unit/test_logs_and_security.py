"""Structured logs and broker security configuration (operability)."""
import io
import logging

import orjson
import pytest

from worker import logs, security


def test_log_lines_are_json_with_extra_fields_and_hashed_ids():
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logs.JsonFormatter())
    log = logging.getLogger("test.logs")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        log.warning("session closed", extra={"user": logs.hash_id("u-secret-7"), "partition": 3})
    finally:
        log.removeHandler(handler)
    entry = orjson.loads(buf.getvalue())
    assert entry["level"] == "warning" and entry["msg"] == "session closed"
    assert entry["partition"] == 3
    assert "u-secret-7" not in buf.getvalue()
    assert entry["user"] == logs.hash_id("u-secret-7") and len(entry["user"]) == 12


def test_security_defaults_to_plaintext(monkeypatch):
    for name in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    sec = security.from_env()
    assert sec.aiokafka_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert sec.faust_credentials() is None


def test_sasl_scram_sha512_credentials_never_show_the_password(monkeypatch):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "sessions-worker")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "hunter2-canary")
    sec = security.from_env()
    kw = sec.aiokafka_kwargs()
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_username"] == "sessions-worker"
    assert "hunter2-canary" not in repr(sec) and "hunter2-canary" not in str(sec.describe())
    creds = sec.faust_credentials()
    assert creds.username == "sessions-worker"


def test_password_can_come_from_a_mounted_secret_file(monkeypatch, tmp_path):
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "u")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(secret))
    assert security.from_env().password == "from-file"


def test_sasl_without_credentials_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.delenv("KAFKA_SASL_USERNAME", raising=False)
    monkeypatch.delenv("KAFKA_SASL_PASSWORD", raising=False)
    with pytest.raises(SystemExit):
        security.from_env()


def test_unknown_protocol_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "TELNET")
    with pytest.raises(SystemExit):
        security.from_env()
