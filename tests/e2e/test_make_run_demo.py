"""End to end: the `make run` demo (deploy/demo.py) against the real broker — the worker
subprocess, the settings, the realistic feed and the live console — shows sessions
opening, upgrading and closing, with closure messages and dead letters, then stops
cleanly. Runs on its own topics and consumer group."""
import os
import re
import subprocess
import sys

import pytest

from tests.kafka_harness import unique_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.e2e


def test_demo_shows_sessions_opening_upgrading_and_closing_within_a_minute(kafka, tmp_path):
    env = {**os.environ, **unique_env("demo", tmp_path, partitions=8), "DEMO_DURATION_S": "50"}
    proc = subprocess.run([sys.executable, "deploy/demo.py"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]
    kinds = re.findall(r" (OPENED|UPGRADED|CLOSED|NOTIFICATIONS|DLQ) ", out)
    assert {"OPENED", "UPGRADED", "CLOSED", "DLQ"} <= set(kinds), out[-3000:]
    # The backlog's sessions end by inactivity (R6) and some of them get a message (R17).
    assert re.search(r"CLOSED.*inactivity", out), out[-3000:]
    assert "demo: stopping" in out
