"""PROCESSING_GUARANTEE settings and the transactional id (README "Guarantees"). The
behaviour itself is proven on the broker: tests/integration/test_worker_restart.py
(``*exactly_once``) and tests/integration/test_crash_recovery.py."""
from __future__ import annotations

import pytest

from worker.settings_env import settings_from_env


def test_at_least_once_is_the_default(monkeypatch):
    monkeypatch.delenv("PROCESSING_GUARANTEE", raising=False)
    ws = settings_from_env()
    assert ws.guarantee == "at_least_once" and not ws.exactly_once


def test_exactly_once_is_accepted_in_any_case(monkeypatch):
    monkeypatch.setenv("PROCESSING_GUARANTEE", "EXACTLY_ONCE")
    assert settings_from_env().exactly_once


@pytest.mark.parametrize("name, value", [("PROCESSING_GUARANTEE", "at_most_once"),
                                         ("TRANSACTION_TIMEOUT_MS", "10")])
def test_bad_guarantee_settings_are_configuration_errors(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit):
        settings_from_env()


def test_transactional_id_is_stable_per_worker_instance(monkeypatch):
    """A restarted worker with the same WORKER_INSTANCE_ID has the same transactional
    id, so its producer fences the previous run and aborts its open transaction."""
    monkeypatch.setenv("WORKER_APP_ID", "sessions")
    monkeypatch.setenv("WORKER_INSTANCE_ID", "pod-3")
    assert settings_from_env().transactional_id == "sessions-pod-3"
    assert settings_from_env().transactional_id == "sessions-pod-3"


def test_without_instance_id_every_process_gets_its_own_transactional_id(monkeypatch):
    monkeypatch.delenv("WORKER_INSTANCE_ID", raising=False)
    ws = settings_from_env()
    assert ws.transactional_id != ws.transactional_id
    assert ws.transactional_id.startswith(f"{ws.app_id}-")
