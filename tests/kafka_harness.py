"""Helpers for tests against the real Kafka broker (deploy/kafka-local), no mocks.

- ``unique_env(tag, tmp_path)``: worker environment with its own topics and app id;
- ``create_topics`` / ``produce`` / ``produce_lines``: put a replay-format log
  (``{"topic", "key", "value" | "value_text"}`` JSON lines) on Kafka;
- ``WorkerProcess``: ``python -m worker run`` as a subprocess (start, wait ready,
  SIGTERM / SIGKILL, log);
- ``consume_outputs``: read every output topic from the beginning until quiet;
- ``replay_expected`` + ``assert_same_outputs``: compare what the worker published
  with what ``worker.replay`` computes from the same log, per (topic, key), in order.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from worker.domain import CoreConfig, SettingsBook
from worker.domain.settings import parse_settings
from worker.replay import Replayer, parse_line

REPO = Path(__file__).resolve().parents[1]
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")

# default (contract) topic name -> the env var that renames it
TOPIC_VARS = {
    "conversation-events": "TOPIC_EVENTS",
    "session-settings": "TOPIC_SETTINGS",
    "session-opened": "TOPIC_OPENED",
    "session-upgraded": "TOPIC_UPGRADED",
    "session-closed": "TOPIC_CLOSED",
    "session-notifications": "TOPIC_NOTIFICATIONS",
    "conversation-events-dlq": "TOPIC_DLQ",
}
INPUTS = ("conversation-events", "session-settings")
SEC = 1_000
MIN = 60 * SEC
HOUR = 60 * MIN
OUTPUTS = tuple(t for t in TOPIC_VARS if t not in INPUTS)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def broker_up(bootstrap: str = BOOTSTRAP) -> bool:
    import socket
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
            return True
    except OSError:
        return False


# -- environment ------------------------------------------------------------------------
def unique_env(tag: str, tmp_path: Path, partitions: int = 4, **extra: str) -> dict:
    """Worker env vars with topic names and app id unique to this test run."""
    run = f"{tag}-{uuid.uuid4().hex[:8]}"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "WORKER_APP_ID": f"it-{run}",
        "TOPIC_PARTITIONS": str(partitions),
        "STATE_DIR": str(tmp_path / "state"),
        "WEB_PORT": "0",
        "LOG_LEVEL": "info",
    }
    for default, var in TOPIC_VARS.items():
        env[var] = f"{default}-{run}"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def topic_name(env: dict, default: str) -> str:
    return env[TOPIC_VARS[default]]


def default_name(env: dict, actual: str) -> str:
    for default, var in TOPIC_VARS.items():
        if env[var] == actual:
            return default
    raise KeyError(actual)


# -- Kafka I/O ------------------------------------------------------------------------
async def create_topics(env: dict) -> None:
    """Create the input and output topics (as the worker would) so a backlog can be
    produced before the worker starts."""
    n = int(env.get("TOPIC_PARTITIONS", "8"))
    admin = AIOKafkaAdminClient(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"])
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = []
        for default, var in TOPIC_VARS.items():
            if env[var] not in existing:
                conf = {"cleanup.policy": "compact"} if default == "session-settings" else {}
                new.append(NewTopic(env[var], n, 1, topic_configs=conf))
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


@dataclass
class Produced:
    topic: str          # default (contract) name
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int


async def produce(env: dict, records: Iterable[tuple[str, bytes | None, bytes | None]]
                  ) -> list[Produced]:
    """Produce (default topic, key, value) records in order; returns where each went."""
    producer = AIOKafkaProducer(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
                                acks="all", linger_ms=5, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        pending = []
        for topic, key, value in records:
            fut = await producer.send(topic_name(env, topic), value, key=key)
            pending.append((topic, key, value, fut))
        out = []
        for topic, key, value, fut in pending:
            meta = await fut
            out.append(Produced(topic, key, value, meta.partition, meta.offset))
        return out
    finally:
        await producer.stop()


def log_lines(items: Iterable[dict]) -> list[bytes]:
    """Replay-format JSON lines from dicts ``{"topic", "key", "value"|"value_text"}``."""
    return [orjson.dumps(item) for item in items]


async def produce_lines(env: dict, lines: Iterable[bytes]) -> list[Produced]:
    return await produce(env, [parse_line(line) for line in lines])


@dataclass
class Output:
    topic: str          # default (contract) name
    key: str | None
    value: dict
    partition: int
    offset: int
    timestamp: int      # broker/producer record time, epoch ms
    received: int       # when this consumer saw it, epoch ms


async def consume_outputs(env: dict, quiet_s: float = 3.0, timeout_s: float = 90.0,
                          until=None, isolation_level: str = "read_uncommitted") -> list[Output]:
    """Read all output topics from the beginning. Stops when ``until(outputs)`` is true
    and nothing new arrived for ``quiet_s`` (or, without ``until``, after ``quiet_s`` of
    silence), or after ``timeout_s``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
                                group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level=isolation_level)
    await consumer.start()
    try:
        n = int(env.get("TOPIC_PARTITIONS", "8"))
        tps = [TopicPartition(topic_name(env, t), p) for t in OUTPUTS for p in range(n)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Output] = []
        start = last = time.monotonic()
        while time.monotonic() - start < timeout_s:
            batches = await consumer.getmany(timeout_ms=200)
            got = time.monotonic()
            seen = now_ms()
            for tp, records in batches.items():
                for r in records:
                    out.append(Output(default_name(env, tp.topic),
                                      r.key.decode(errors="replace")
                                      if r.key is not None else None,
                                      orjson.loads(r.value), tp.partition, r.offset,
                                      r.timestamp, seen))
                    last = got
            if (until is None or until(out)) and time.monotonic() - last >= quiet_s:
                break
        return out
    finally:
        await consumer.stop()


# -- the worker process -------------------------------------------------------------------
READY_LINE = "recovered: own events partitions"


class WorkerProcess:
    """``python -m worker run`` with ``env``; output goes to ``log_path``."""

    def __init__(self, env: dict, log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> "WorkerProcess":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "run"], cwd=REPO,
            env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
            stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 60.0, count: int = 1) -> None:
        """Until the worker logged its ``count``-th recovery (once per rebalance): its
        assigned partitions are rebuilt and the stream resumes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n"
                                     f"{self.log()[-4000:]}")
            if self.log().count(READY_LINE) >= count:
                return
            time.sleep(0.2)
        raise AssertionError(f"worker not ready in {timeout_s} s:\n{self.log()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"worker did not stop in {timeout_s} s after {sig}:\n"
                                 f"{self.log()[-4000:]}")
        finally:
            if self._log:
                self._log.close()

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)


# -- comparison with replay ----------------------------------------------------------------
def replay_records(records: Iterable[tuple[str, bytes | None, bytes | None]],
                   until: int | None = None, cfg: CoreConfig | None = None,
                   default_settings: dict | None = None) -> list[tuple[str, str, dict]]:
    """What ``worker.replay`` publishes for raw (default topic, key, value) records."""
    cfg = cfg or CoreConfig()
    book = SettingsBook(parse_settings({"app_id": "-", **default_settings}, "-", cfg)
                        if default_settings else None)
    rp = Replayer(cfg, book=book)
    out: list = []
    for topic, key, value in records:
        out.extend(rp.record(topic, key, value))
    if until is not None:
        out.extend(rp.until(until))
    return out


def replay_expected(lines: Iterable[bytes], until: int | None = None,
                    cfg: CoreConfig | None = None, default_settings: dict | None = None
                    ) -> list[tuple[str, str, dict]]:
    """What ``python -m worker replay`` publishes for ``lines`` (in-process)."""
    return replay_records([parse_line(line) for line in lines], until, cfg, default_settings)


def _normalise(topic: str, value: dict, env: dict | None) -> dict:
    """Dead letters name the partition and offset where the record was read: replay
    numbers records 0, 1, 2 … in one partition, Kafka does not. Compare the rest."""
    if topic != "conversation-events-dlq":
        return value
    value = dict(value)
    value.pop("partition", None)
    value.pop("offset", None)
    if env is not None and value.get("topic") in env.values():
        value["topic"] = default_name(env, value["topic"])
    return value


def by_topic_key(records, env: dict | None = None) -> dict[tuple[str, str], list[dict]]:
    """Group outputs per (topic, key), keeping order; Kafka orders records per
    partition and both the worker and replay emit one key's records in order."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for rec in records:
        topic, key, value = (rec.topic, rec.key, rec.value) if isinstance(rec, Output) else rec
        # replay names a missing key "" (its output keys are text)
        grouped.setdefault((topic, key or ""), []).append(_normalise(topic, value, env))
    return grouped


def diff_outputs(actual, expected, env: dict) -> str:
    """'' when equal per (topic, key); else a readable summary of the differences."""
    got, want = by_topic_key(actual, env), by_topic_key(expected)
    problems = []
    for tk in sorted(set(got) | set(want), key=str):
        a, e = got.get(tk, []), want.get(tk, [])
        if a != e:
            first = next((i for i, (x, y) in enumerate(zip(a, e)) if x != y), min(len(a), len(e)))
            problems.append(f"{tk}: got {len(a)} records, want {len(e)}; first difference "
                            f"at #{first}:\n  got:  {a[first:first + 2]}\n"
                            f"  want: {e[first:first + 2]}")
    if not problems:
        return ""
    return f"{len(problems)} (topic, key) differ; first ones:\n" + "\n".join(problems[:5])


def assert_same_outputs(actual, expected, env: dict) -> None:
    problem = diff_outputs(actual, expected, env)
    assert not problem, problem


def dedupe(records: list[Output]) -> list[Output]:
    """Drop exact repeats of a record under the same (topic, key) — what an
    at-least-once consumer would do with re-published outputs."""
    seen: set = set()
    out = []
    for rec in records:
        ident = (rec.topic, rec.key, orjson.dumps(rec.value, option=orjson.OPT_SORT_KEYS))
        if ident not in seen:
            seen.add(ident)
            out.append(rec)
    return out


def run(coro):
    return asyncio.run(coro)


# -- logs ---------------------------------------------------------------------------------
def event_item(value: dict) -> dict:
    return {"topic": "conversation-events", "key": f"{value['app_id']}:{value['user_id']}",
            "value": value}


def conversation_items(app_id: str, users: int, base: int, n: int) -> list[dict]:
    """``n`` events over ``users`` keys of ``app_id``, ts from ``base`` upwards (1 ms
    apart): each key first connects (a non-interactive session opens), then gets user
    messages (with and without intent, so sessions upgrade) and agent messages."""
    items = []
    for i in range(n):
        kind = "on_connect" if i < users else ("user_message" if i % 3 else "agent_message")
        value = {"event_id": f"e{i}", "app_id": app_id, "user_id": f"u{i % users}",
                 "ts": base + i, "type": kind, "channel": "web"}
        if kind == "on_connect":
            value["action"] = "run_message"
        if kind == "user_message":
            value["intent"] = "Book" if i % 2 else None
        items.append(event_item(value))
    return items


def settings_item(app_id: str, value: dict | None) -> dict:
    return {"topic": "session-settings", "key": app_id,
            "value": None if value is None else {"app_id": app_id, **value}}


MIXED_APPS = {
    "pro": None,                                          # proactive, worker defaults
    "msg": {"mode": "proactive", "inactivity_minutes": 5, "clear_auth_profiles": False,
            "closure": {"behavior": "message", "message": "Bye.", "channels": ["web", "slack"]},
            "close_script": "koreUtil.ClearAuthProfiles(['crm'])"},
    "clr": {"mode": "proactive", "inactivity_minutes": 7, "clear_auth_profiles": True},
    "cont": {"mode": "continue_on_same_intent", "inactivity_minutes": 5},
    "leg": {"mode": "legacy", "inactivity_minutes": 6},
}


def mixed_log(seed: int, start_ts: int, n_events: int, n_users: int = 40,
              step_ms: int = 8_000, bad_every: int = 97, dup_every: int = 23) -> list[dict]:
    """A realistic log: settings first, then events of every type for several apps and
    modes, in non-decreasing ``ts`` (so one partition's clock and replay's single clock
    agree, R22), with duplicates (R21) and rejected records (R20) sprinkled in."""
    import random
    rnd = random.Random(seed)
    items = [settings_item(app, conf) for app, conf in MIXED_APPS.items() if conf]
    apps = list(MIXED_APPS)
    intents = ["Book", "Pay", "Track", None, None]
    channels = ["web", "web", "slack", "sms", "email", "voice"]
    ts = start_ts
    recent: list[dict] = []
    for n in range(n_events):
        ts += rnd.randint(0, step_ms)
        if dup_every and n % dup_every == dup_every - 1 and recent:
            items.append(event_item(dict(rnd.choice(recent[-5:]))))      # a retry
            continue
        if bad_every and n % bad_every == bad_every - 1:
            items.append(rnd.choice(_bad_items(ts, rnd)))
            continue
        app = rnd.choice(apps)
        user = f"u{rnd.randrange(n_users)}"
        kind = rnd.choices(
            ["user_message", "agent_message", "on_connect", "auth", "discard", "discard_all",
             "refresh", "context"], weights=[40, 25, 8, 4, 3, 2, 2, 16])[0]
        value = {"event_id": f"{app}-{user}-{n}", "app_id": app, "user_id": user, "ts": ts,
                 "type": kind, "channel": rnd.choice(channels)}
        if rnd.random() < 0.03:
            value["developer"] = True
        if kind == "user_message":
            value["intent"] = rnd.choice(intents)
            value["input_valid"] = rnd.random() > 0.1
        elif kind == "on_connect":
            value["action"] = rnd.choice(["run_script", "run_message", "trigger_dialog"])
            value["intent"] = rnd.choice(intents)
        elif kind == "auth":
            value["auth_profile"] = rnd.choice(["crm", "bank", "mail"])
        elif kind == "context":
            if rnd.random() < 0.5:
                value["dialog"] = rnd.choice([None, {"intent": rnd.choice(intents[:3])}])
            if rnd.random() < 0.5:
                value["tags"] = rnd.sample(["a", "b", "c", "d"], rnd.randint(0, 2))
            if rnd.random() < 0.4:
                value["sentiment"] = {"joy": rnd.random(), "anger": rnd.random()}
            if rnd.random() < 0.6:
                value["variables"] = [
                    {"name": rnd.choice(["cart", "lang", "acct"]), "value": n,
                     **({"ttl_s": rnd.choice([60, 600, 3600])} if rnd.random() < 0.4 else {}),
                     **({"auth_profile": "crm"} if rnd.random() < 0.2 else {})}]
        items.append(event_item(value))
        recent.append(value)
    return items


def _bad_items(ts: int, rnd) -> list[dict]:
    good = {"event_id": f"bad-{ts}-{rnd.random()}", "app_id": "pro", "user_id": "u1", "ts": ts,
            "type": "user_message", "channel": "web"}
    key = "pro:u1"
    ev = "conversation-events"
    return [
        {"topic": ev, "key": key, "value_text": "not json {"},
        {"topic": ev, "key": key, "value": [1, 2]},
        {"topic": ev, "key": key, "value": {k: v for k, v in good.items() if k != "ts"}},
        {"topic": ev, "key": key, "value": {**good, "ts": "soon"}},
        {"topic": ev, "key": key, "value": {**good, "type": "shout"}},
        {"topic": ev, "key": "pro:someone-else", "value": good},
    ]
