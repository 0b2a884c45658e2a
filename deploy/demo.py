"""``make run``: a local broker (unless one is reachable), the worker, demo traffic, and
the lifecycle events printed as they happen. Ctrl-C stops everything cleanly.

The demo apps use 1-minute inactivity (the operator lowers the allowed minimum with
MIN_INACTIVITY_MINUTES=1, as R4 allows per deployment) and the feed starts with a short
backlog of conversations from the last minute, so closes show up within a minute.
"""
from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
TOPICS = {name: os.environ.get(env, default) for env, name, default in [
    ("TOPIC_EVENTS", "events", "conversation-events"),
    ("TOPIC_SETTINGS", "settings", "session-settings"),
    ("TOPIC_OPENED", "opened", "session-opened"),
    ("TOPIC_UPGRADED", "upgraded", "session-upgraded"),
    ("TOPIC_CLOSED", "closed", "session-closed"),
    ("TOPIC_NOTIFICATIONS", "notifications", "session-notifications"),
    ("TOPIC_DLQ", "dlq", "conversation-events-dlq"),
]}
PARTITIONS = int(os.environ.get("TOPIC_PARTITIONS", "8"))
DEMO_APPS = {
    "acme-bank": {"mode": "proactive", "inactivity_minutes": 1, "clear_auth_profiles": False,
                  "closure": {"behavior": "message", "message": "Your session has ended.",
                              "channels": ["web", "slack"]},
                  "close_script": "koreUtil.ClearAuthProfiles(['CoreBanking'])"},
    "globetrek": {"mode": "continue_on_same_intent", "inactivity_minutes": 1},
    "shopfast": {"mode": "proactive", "inactivity_minutes": 2, "clear_auth_profiles": True},
    "telco-legacy": {"mode": "legacy", "inactivity_minutes": 1},
}
CHANNELS = ["web", "web", "slack", "msteams", "sms", "voice", "email"]
INTENTS = ["CheckBalance", "BookFlight", "TrackOrder", "ResetPassword", None]
COLOURS = {"opened": "\033[32m", "upgraded": "\033[36m", "closed": "\033[33m",
           "notifications": "\033[35m", "dlq": "\033[31m"}


def reachable(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=2):
            return True
    except OSError:
        return False


def now_ms() -> int:
    return int(time.time() * 1000)


class Feed:
    """Realistic conversations: on_connect, user and agent messages, auth, context,
    discard, refresh, a developer, and now and then a bad record."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.rng = random.Random(42)
        self.seq = 0

    async def send(self, app: str, user: str, etype: str, ts: int, channel: str, **fields) -> None:
        self.seq += 1
        body = {"event_id": f"demo-{self.seq}", "app_id": app, "user_id": user, "ts": ts,
                "type": etype, "channel": channel, **fields}
        await self.producer.send(TOPICS["events"], orjson.dumps(body), key=f"{app}:{user}".encode())

    async def conversation(self, app: str, user: str, start: int, live: bool) -> None:
        rng, ts = self.rng, start
        channel = rng.choice(CHANNELS)
        developer = user.endswith("dev")
        extra = {"developer": True} if developer else {}
        step = (lambda lo, hi: asyncio.sleep(rng.uniform(lo, hi) / 1000)) if live else None

        async def tick(lo: int, hi: int) -> None:
            nonlocal ts
            if step:
                await step(lo, hi)
                ts = now_ms()
            else:
                ts += rng.randint(lo, hi)

        if rng.random() < 0.5:
            await self.send(app, user, "on_connect", ts, channel, action="trigger_dialog",
                            intent=rng.choice(INTENTS), **extra)
            await tick(800, 2500)
        intent = rng.choice(INTENTS)
        for turn in range(rng.randint(1, 4)):
            r = rng.random()
            if r < 0.1:
                await self.send(app, user, "auth", ts, channel, auth_profile="CoreBanking", **extra)
            elif r < 0.15:
                await self.send(app, user, rng.choice(["discard", "discard_all"]), ts, channel, **extra)
            else:
                await self.send(app, user, "user_message", ts, channel, intent=intent, **extra)
            await tick(300, 1500)
            await self.send(app, user, "agent_message", ts, channel, **extra)
            if rng.random() < 0.4:
                await self.send(app, user, "context", ts, channel,
                                dialog={"intent": intent} if intent else None, tags=[f"turn{turn}"],
                                sentiment={"positive": round(rng.random(), 2)},
                                variables=[{"name": "cart", "value": turn},
                                           {"name": "token", "value": "t", "ttl_s": 600,
                                            "auth_profile": "CoreBanking"}])
            await tick(500, 3000)
        if rng.random() < 0.1:
            await self.send(app, user, "refresh", ts, channel, **extra)

    async def bad_record(self) -> None:
        bad = self.rng.choice([b"{not json", b"[1,2,3]", orjson.dumps({"app_id": "acme-bank"}),
                               orjson.dumps({"event_id": "x", "app_id": "acme-bank", "user_id": "u",
                                             "ts": now_ms(), "type": "teleport", "channel": "web"})])
        await self.producer.send(TOPICS["events"], bad, key=b"acme-bank:u-bad")


async def ensure_topics() -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(t, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"}
                           if key == "settings" else {})
                  for key, t in TOPICS.items() if t not in existing]
        if wanted:
            await admin.create_topics(wanted)
    finally:
        await admin.close()


async def print_lifecycle(stop: asyncio.Event, armed: asyncio.Event) -> None:
    """Print every output record published from now on (no consumer group: the console
    starts at the current end of each output topic, then follows)."""
    names = {t: k for k, t in TOPICS.items() if k not in ("events", "settings")}
    colour = sys.stdout.isatty()
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    await consumer.start()
    try:
        from aiokafka import TopicPartition
        tps = [TopicPartition(t, p) for t in names
               for p in sorted(consumer.partitions_for_topic(t) or await _partitions(consumer, t))]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        armed.set()
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                kind = names[tp.topic]
                for rec in records:
                    v = orjson.loads(rec.value)
                    when = time.strftime("%H:%M:%S")
                    sid = (v.get("session_id") or "")[:8]
                    if kind == "opened":
                        info = (f"{'interactive' if v['interactive'] else 'non-interactive'} via "
                                f"{v['trigger']} on {v['channel']}{' [developer]' if v['developer'] else ''}"
                                f"{' (replaces ' + v['previous_session_id'][:8] + ')' if v['previous_session_id'] else ''}")
                    elif kind == "upgraded":
                        info = f"now interactive on {v['channel']}"
                    elif kind == "closed":
                        info = (f"{v['reason']} after {(v['closed_at'] - v['opened_at']) / 1000:.0f}s, "
                                f"{v['user_events']} user/{v['agent_events']} agent events, billable="
                                f"{v['billable']} blocks={v['billing_blocks']} cleared={v['cleared']}")
                    elif kind == "notifications":
                        info = f"closure message on {v['channel']}: {v['text']!r}"
                    else:
                        info = f"{v['reason']}: {v['detail']}"
                    key = rec.key.decode(errors="replace") if rec.key else "-"
                    label = f"{kind.upper():<13}"
                    if colour:
                        label = f"{COLOURS[kind]}{label}\033[0m"
                    print(f"{when} {label} {sid:<8} {key:<22} {info}", flush=True)
    finally:
        armed.set()
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(50):
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return parts
        await asyncio.sleep(0.2)
    raise RuntimeError(f"topic {topic} has no partitions")


async def feed(stop: asyncio.Event) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5)
    await producer.start()
    try:
        for app, s in DEMO_APPS.items():
            await producer.send_and_wait(TOPICS["settings"], orjson.dumps({"app_id": app, **s}),
                                         key=app.encode())
        f = Feed(producer)
        users = [(app, f"user-{i:03d}") for app in DEMO_APPS for i in range(25)] + [("acme-bank", "qa-dev")]
        # A backlog: conversations from the last minute, so closes show up soon.
        for app, user in f.rng.sample(users, 20):
            await f.conversation(app, user, now_ms() - f.rng.randint(65_000, 85_000), live=False)
        await producer.flush()
        print("demo: backlog published; live traffic follows (Ctrl-C to stop)", flush=True)
        tasks: set[asyncio.Task] = set()
        while not stop.is_set():
            app, user = f.rng.choice(users)
            tasks.add(asyncio.create_task(f.conversation(app, user, now_ms(), live=True)))
            if f.rng.random() < 0.05:
                await f.bad_record()
            tasks = {t for t in tasks if not t.done()}
            try:
                await asyncio.wait_for(stop.wait(), timeout=f.rng.uniform(0.5, 2.0))
            except asyncio.TimeoutError:
                pass
        for t in tasks:
            t.cancel()
    finally:
        await producer.stop()


def start_broker_if_needed() -> bool:
    if reachable(BOOTSTRAP):
        print(f"demo: using the broker at {BOOTSTRAP}", flush=True)
        return False
    if "KAFKA_BOOTSTRAP_SERVERS" in os.environ and not BOOTSTRAP.startswith(("localhost", "127.0.0.1")):
        sys.exit(f"demo: KAFKA_BOOTSTRAP_SERVERS={BOOTSTRAP} is not reachable")
    print("demo: starting the local broker (deploy/kafka-local)…", flush=True)
    subprocess.run(["bash", os.path.join(ROOT, "deploy/kafka-local/start.sh")], check=True)
    return True


async def main() -> int:
    started = start_broker_if_needed()
    await ensure_topics()
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=BOOTSTRAP, MIN_INACTIVITY_MINUTES="1",
               LOG_LEVEL=os.environ.get("LOG_LEVEL", "WARNING"))
    stop, armed = asyncio.Event(), asyncio.Event()
    printer = asyncio.create_task(print_lifecycle(stop, armed))
    await armed.wait()
    worker = subprocess.Popen([sys.executable, "-m", "worker", "run"], cwd=ROOT, env=env)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    feeder = asyncio.create_task(feed(stop))
    watcher = asyncio.create_task(asyncio.to_thread(worker.wait))
    waiters = {feeder, watcher, asyncio.create_task(stop.wait())}
    duration = float(os.environ.get("DEMO_DURATION_S", "0"))
    if duration > 0:          # for tests: stop by itself after a while
        waiters.add(asyncio.create_task(asyncio.sleep(duration)))
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    print("\ndemo: stopping…", flush=True)
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(worker.wait), timeout=30)
        except asyncio.TimeoutError:
            worker.kill()
    await asyncio.gather(printer, feeder, return_exceptions=True)
    if started:
        subprocess.run(["bash", os.path.join(ROOT, "deploy/kafka-local/stop.sh")], check=False)
    return 0 if worker.returncode in (0, -signal.SIGTERM) else (worker.returncode or 1)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
