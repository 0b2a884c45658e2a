"""``make bench``: the worker against the local Kafka broker, next to two baselines.

One run measures, on the broker at --bootstrap (deploy/kafka-local):

- **P** ``bench/passthrough.py``: raw aiokafka consume -> produce, no state: the practical
  limit of one Python process here;
- **N** ``bench/naive_faust.py``: the naive Faust sessioniser most users would write;
- **W** ``python -m worker run``: our worker, one process, memory store;

each draining a backlog of synthetic traffic (``bench/load.py`` on ``bench/synthetic.py``)
produced *before* it starts: events/s = records / time from its first to its last
processed record. Progress is observed from outside: P by the output topic's end
offsets, N by its ``/count`` page, W by its ``/stats`` page (``worker.events``), else
its Prometheus ``/metrics`` (``sessions_events_consumed_total``), else its consumer
group's committed offsets. Then, for W only:

- **latency**: paced traffic at 50 % and 80 % of W's measured rate; the producer stamps
  ``sent_at_ns`` in each event, a consumer of session-opened joins on
  ``trigger_event_id`` (same host clock): p50/p99 produce -> opened received;
- **state**: N open sessions (one message per new user, in two halves): RSS per open
  session (memory store; slope of RSS between N/2 and N open, and RSS growth since idle
  / N), close lateness (closed record's timestamp - (closed_at + allowed lateness)) while
  sessions keep expiring, and cold recovery: SIGKILL, start a new process with the same
  WORKER_APP_ID, time until a probe event's session-opened appears (also: until
  ``/readyz`` answered 200, and a breakdown from the log: partitions assigned, state
  rebuilt). Below 1M sessions the recovery per 1M is an extrapolation (only the restore
  part scaled) and is never reported as met.

A W process counts as ready when it turned a probe event into a session-opened record.

Prints a markdown table (figure | value | floor | met?) and writes
``bench/results/bench-<timestamp>.json`` and ``bench/results/latest.json``. Every topic
of the run carries a unique tag and is deleted at the end. Sizes are flags (``-h``).
Figures depend on the machine and on what else runs on it: the JSON records the load
average before and after each phase.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import load  # noqa: E402
from bench.synthetic import APPS  # noqa: E402

PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
POLL_S = 0.05

FLOORS = {
    "w_rate": 25_000, "w_goal": 40_000, "w_over_p": 0.5, "w_over_n": 3.0,
    "p99_ms_50": 50.0, "close_p99_s": 1.0, "close_at_open": 1_000_000,
    "bytes_per_session": 500, "recovery_s_per_1m": 30.0,
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    with open("/proc/loadavg") as fh:
        return [float(x) for x in fh.read().split()[:3]]


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, all cores (/proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]              # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """Cores' worth of CPU the whole machine used between two ``cpu_times``."""
    total = after[1] - before[1]
    return round((after[0] - before[0]) / total * (os.cpu_count() or 1), 2) if total else None


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


# -- processes -----------------------------------------------------------------------------
class Proc:
    """A subprocess we started (and only those are ever signalled), logging to a file."""

    def __init__(self, name: str, cmd: list[str], env: dict, log_path: Path, cwd: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._fh = open(log_path, "ab")
        self.started = time.time()
        self.p = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                                  stdout=self._fh, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def rss(self) -> int | None:
        try:
            with open(f"/proc/{self.pid}/statm") as fh:
                return int(fh.read().split()[1]) * PAGE
        except OSError:
            return None

    def cpu_s(self) -> float | None:
        try:
            with open(f"/proc/{self.pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.alive():
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._fh.close()
        return self.p.returncode


# -- Kafka helpers -------------------------------------------------------------------------
class Offsets:
    """End offsets of topics and committed offsets of groups, polled cheaply."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)

    async def __aenter__(self) -> "Offsets":
        await self.consumer.start()
        await self.admin.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def end(self, topics: list[str], partitions: int) -> int:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        return sum((await self.consumer.end_offsets(tps)).values())

    async def end_by_topic(self, topics: list[str], partitions: int) -> dict[str, int]:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        got = await self.consumer.end_offsets(tps)
        out = {t: 0 for t in topics}
        for tp, off in got.items():
            out[tp.topic] += off
        return out

    async def committed(self, group: str, topic: str) -> int:
        offsets = await self.admin.list_consumer_group_offsets(group)
        return sum(max(0, om.offset) for tp, om in offsets.items() if tp.topic == topic)


# -- progress of the system under test -----------------------------------------------------
class Progress:
    """Counts processed input records of the system under test by polling one source."""

    def __init__(self, kind: str, **kw) -> None:
        self.kind = kind
        self.kw = kw

    async def read(self, http: aiohttp.ClientSession, offs: Offsets) -> int | None:
        kw = self.kw
        try:
            if self.kind == "end_offsets":
                return await offs.end(kw["topics"], kw["partitions"])
            if self.kind == "committed":
                return await offs.committed(kw["group"], kw["topic"])
            async with http.get(kw["url"], timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status != 200:
                    return None
                if self.kind == "json":
                    return kw["extract"](await resp.json(content_type=None))
                if self.kind == "prometheus":
                    text = await resp.text()
                    total, found = 0.0, False
                    for line in text.splitlines():
                        if line.startswith(kw["metric"]):
                            total += float(line.rsplit(" ", 1)[1])
                            found = True
                    return int(total) if found else None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError, KeyError,
                TypeError):
            return None
        return None


def w_stats_events(stats: dict) -> int:
    return int(stats["worker"].get("events", 0)) + int(
        stats.get("outputs", {}).get("conversation-events-dlq", 0))


async def pick_w_progress(http, offs, web_port: int, group: str, topic: str,
                          proc: Proc, timeout: float = 90.0) -> Progress:
    """The best progress source W offers: /stats, /metrics, else committed offsets."""
    candidates = [
        Progress("json", url=f"http://127.0.0.1:{web_port}/stats", extract=w_stats_events),
        Progress("prometheus", url=f"http://127.0.0.1:{web_port}/metrics",
                 metric="sessions_events_consumed_total"),
    ]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for cand in candidates:
            if await cand.read(http, offs) is not None:
                return cand
        if ("Worker ready" in proc.log_text()
                or await http_status(http, f"http://127.0.0.1:{web_port}/readyz") == 200):
            break
        if not proc.alive():
            raise RuntimeError(f"W exited with {proc.p.returncode}:\n{proc.log_text()[-3000:]}")
        await asyncio.sleep(0.2)
    return Progress("committed", group=group, topic=topic)


async def watch(progress: Progress, expect: int, timeout: float, proc: Proc | None,
                http, offs) -> dict:
    """Poll until ``expect`` records are processed. Rate = (count at the last sample -
    count at the first non-zero sample) / (time between them)."""
    samples: list[tuple[float, int]] = []
    cpu_first = cpu_last = None
    deadline = time.monotonic() + timeout
    complete = False
    while time.monotonic() < deadline:
        n = await progress.read(http, offs)
        now = time.time()
        if n is not None:
            if n > 0 and (not samples or samples[-1][1] != n):
                samples.append((now, n))
                if len(samples) == 1 and proc:
                    cpu_first = proc.cpu_s()
            if n >= expect:
                complete = True
                if proc:
                    cpu_last = proc.cpu_s()
                break
        if proc is not None and not proc.alive():
            break
        await asyncio.sleep(POLL_S)
    out: dict = {"expect": expect, "complete": complete, "source": progress.kind,
                 "samples": len(samples)}
    if len(samples) >= 2:
        (t0, c0), (t1, c1) = samples[0], samples[-1]
        out.update(first=t0, last=t1, seconds=round(t1 - t0, 3), processed=c1,
                   events_per_s=round((c1 - c0) / (t1 - t0)) if t1 > t0 else None)
        if progress.kind == "committed" and len(samples) >= 3 and complete:
            # Faust commits every 10,000 acks during a drain, but the last partial batch
            # only at its commit interval (2.8 s): measure up to the commit before it.
            (t2, c2) = samples[-2]
            out["events_per_s_to_last_commit"] = out["events_per_s"]
            out["events_per_s"] = round((c2 - c0) / (t2 - t0)) if t2 > t0 else None
        if cpu_first is not None and cpu_last is not None and cpu_last > cpu_first:
            out["cpu_s"] = round(cpu_last - cpu_first, 2)
            out["events_per_cpu_s"] = round((c1 - c0) / (cpu_last - cpu_first))
        # steady rate between 10 % and 90 % of the records (ramp-up and tail excluded)
        lo = next((s for s in samples if s[1] >= 0.1 * expect), None)
        hi = next((s for s in samples if s[1] >= 0.9 * expect), None)
        if lo and hi and hi[0] > lo[0]:
            out["steady_events_per_s"] = round((hi[1] - lo[1]) / (hi[0] - lo[0]))
    elif samples:
        out.update(processed=samples[-1][1])
    return out


# -- one run's names -----------------------------------------------------------------------
@dataclass
class Ctx:
    args: argparse.Namespace
    tag: str
    workdir: Path
    backlog: load.Backlog | None = None
    procs: list[Proc] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return self.args.bootstrap

    @property
    def parts(self) -> int:
        return self.args.partitions

    def name(self, *parts: str) -> str:
        return "-".join((self.tag,) + parts)

    def start(self, name: str, cmd: list[str], env: dict, cwd: Path | None = None) -> Proc:
        path = self.workdir / f"{name}.log"
        proc = Proc(name, cmd, env, path, cwd or REPO)
        self.procs.append(proc)
        log(f"started {name} (pid {proc.pid}), log {path}")
        return proc


def w_env(ctx: Ctx, sub: str, web_port: int, **extra) -> dict:
    base = ctx.name("w", sub)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": ctx.bootstrap,
        "WORKER_APP_ID": base,
        "TOPIC_EVENTS": f"{base}-events",
        "TOPIC_SETTINGS": f"{base}-settings",
        "TOPIC_OPENED": f"{base}-opened",
        "TOPIC_UPGRADED": f"{base}-upgraded",
        "TOPIC_CLOSED": f"{base}-closed",
        "TOPIC_NOTIFICATIONS": f"{base}-notifications",
        "TOPIC_DLQ": f"{base}-dlq",
        "TOPIC_PARTITIONS": str(ctx.parts),
        "STORE": ctx.args.store,
        "STATE_DIR": str(ctx.workdir / f"state-{sub}"),
        "WEB_PORT": str(web_port),
        "LOG_LEVEL": "info",
    }
    for item in ctx.args.worker_env:
        k, _, v = item.partition("=")
        env[k] = v
    env.update({k: str(v) for k, v in extra.items()})
    return env


async def create_w_topics(ctx: Ctx, env: dict) -> None:
    names = [env[k] for k in ("TOPIC_EVENTS", "TOPIC_SETTINGS", "TOPIC_OPENED", "TOPIC_UPGRADED",
                              "TOPIC_CLOSED", "TOPIC_NOTIFICATIONS", "TOPIC_DLQ")]
    await load.create_topics(names, ctx.parts, ctx.bootstrap, compacted=[env["TOPIC_SETTINGS"]])


async def produce_settings(ctx: Ctx, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=ctx.bootstrap, acks="all")
    await producer.start()
    try:
        for app, settings in APPS:
            await producer.send_and_wait(topic, orjson.dumps(settings), key=app.encode())
    finally:
        await producer.stop()


async def produce_backlog(ctx: Ctx, topic: str, n: int) -> dict:
    records = ctx.backlog.records(limit=n)
    stats = await load.produce(topic, records, ctx.parts, ctx.bootstrap)
    log(f"backlog: {stats['records']:,} records ({stats['avg_value_bytes']} B avg) on {topic} "
        f"in {stats['seconds']}s")
    return stats


# -- P ---------------------------------------------------------------------------------------
async def bench_p(ctx: Ctx, http, offs, i: int) -> dict:
    n = ctx.args.events
    src, dst = ctx.name("p", str(i), "in"), ctx.name("p", str(i), "out")
    await load.create_topics([src, dst], ctx.parts, ctx.bootstrap)
    res = {"load_before": loadavg(), "backlog": await produce_backlog(ctx, src, n)}
    proc = ctx.start(f"P{i}", [PY, str(REPO / "bench/passthrough.py"), "--bootstrap",
                               ctx.bootstrap, "--src", src, "--dst", dst, "--group",
                               ctx.name("p", str(i), "group"), "--expect", str(n)], {})
    res["watch"] = await watch(Progress("end_offsets", topics=[dst], partitions=ctx.parts),
                               n, ctx.args.drain_timeout, proc, http, offs)
    try:
        proc.p.wait(30)
    except subprocess.TimeoutExpired:
        pass
    proc.stop()
    lines = [ln for ln in proc.log_text().splitlines() if ln.startswith("{")]
    if lines:
        res["self_report"] = json.loads(lines[-1])
    res["events_per_s"] = res["watch"].get("events_per_s") if res["watch"]["complete"] else None
    res["load_after"] = loadavg()
    await load.delete_topics_matching(ctx.name("p", str(i)), ctx.bootstrap)
    return res


# -- N ---------------------------------------------------------------------------------------
async def bench_n(ctx: Ctx, http, offs, i: int) -> dict:
    n = ctx.args.naive_events
    base = ctx.name("n", str(i))
    topics = {"TOPIC_EVENTS": f"{base}-events", "TOPIC_OPENED": f"{base}-opened",
              "TOPIC_CLOSED": f"{base}-closed"}
    await load.create_topics(list(topics.values()), ctx.parts, ctx.bootstrap)
    res = {"load_before": loadavg(), "backlog": await produce_backlog(ctx, topics["TOPIC_EVENTS"], n)}
    port = free_port()
    env = {**topics, "KAFKA_BOOTSTRAP_SERVERS": ctx.bootstrap, "NAIVE_APP_ID": base,
           "TOPIC_PARTITIONS": str(ctx.parts), "WEB_PORT": str(port),
           "STATE_DIR": str(ctx.workdir / f"naive-{i}"), "LOG_LEVEL": "info"}
    for item in ctx.args.naive_env:
        k, _, v = item.partition("=")
        env[k] = v
    proc = ctx.start(f"N{i}", [PY, str(REPO / "bench/naive_faust.py")], env, cwd=ctx.workdir)
    res["watch"] = await watch(Progress("json", url=f"http://127.0.0.1:{port}/count",
                                        extract=lambda d: int(d["events"])),
                               n, ctx.args.drain_timeout, proc, http, offs)
    res["outputs"] = await offs.end_by_topic([topics["TOPIC_OPENED"], topics["TOPIC_CLOSED"]],
                                             ctx.parts)
    proc.stop()
    res["events_per_s"] = res["watch"].get("events_per_s") if res["watch"]["complete"] else None
    res["load_after"] = loadavg()
    await load.delete_topics_matching(base, ctx.bootstrap)
    return res


# -- W ---------------------------------------------------------------------------------------
async def bench_w(ctx: Ctx, http, offs, i: int) -> dict:
    n = ctx.args.events
    port = free_port()
    env = w_env(ctx, f"t{i}", port)
    await create_w_topics(ctx, env)
    await produce_settings(ctx, env["TOPIC_SETTINGS"])
    res = {"load_before": loadavg(),
           "backlog": await produce_backlog(ctx, env["TOPIC_EVENTS"], n)}
    proc = ctx.start(f"W{i}", [PY, "-m", "worker", "run"], env)
    try:
        progress = await pick_w_progress(http, offs, port, env["WORKER_APP_ID"],
                                         env["TOPIC_EVENTS"], proc)
        log(f"W progress source: {progress.kind}")
        res["watch"] = await watch(progress, n, ctx.args.drain_timeout, proc, http, offs)
        res["outputs"] = await offs.end_by_topic(
            [env[k] for k in ("TOPIC_OPENED", "TOPIC_UPGRADED", "TOPIC_CLOSED",
                              "TOPIC_NOTIFICATIONS", "TOPIC_DLQ")], ctx.parts)
        res["rss_bytes"] = proc.rss()
    finally:
        res["exit_code"] = proc.stop()
    res["events_per_s"] = res["watch"].get("events_per_s") if res["watch"]["complete"] else None
    if not res["watch"]["complete"]:
        res["log_tail"] = proc.log_text()[-2000:]
    res["load_after"] = loadavg()
    await load.delete_topics_matching(env["WORKER_APP_ID"], ctx.bootstrap)
    return res


# -- latency (W, paced) ------------------------------------------------------------------------
async def consume_opened(ctx: Ctx, topic: str, stop: asyncio.Event, out: list) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=ctx.bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(ctx.parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            now_ns = time.time_ns()
            for records in batches.values():
                for r in records:
                    try:
                        tid = orjson.loads(r.value)["trigger_event_id"]
                    except (ValueError, KeyError, TypeError):
                        continue
                    out.append((tid, now_ns, r.timestamp))
    finally:
        await consumer.stop()


async def bench_latency(ctx: Ctx, http, offs, rates: list[tuple[str, float]]) -> dict:
    port = free_port()
    env = w_env(ctx, "lat", port)
    await create_w_topics(ctx, env)
    await produce_settings(ctx, env["TOPIC_SETTINGS"])
    proc = ctx.start("W-latency", [PY, "-m", "worker", "run"], env)
    res: dict = {"runs": {}}
    skip = 0
    try:
        res["ready"] = await w_ready(ctx, http, offs, proc, env, port, 180)
        await asyncio.sleep(1)
        for label, rate in rates:
            secs = ctx.args.paced_seconds
            n = int(rate * secs)
            sent_log = ctx.workdir / f"sent-{label}.json"
            stop = asyncio.Event()
            got: list = []
            consumer = asyncio.create_task(consume_opened(ctx, env["TOPIC_OPENED"], stop, got))
            before = loadavg()
            lp = ctx.start(f"paced-{label}", [PY, str(REPO / "bench/load.py"), "--bootstrap",
                                              ctx.bootstrap, "paced", "--topic", env["TOPIC_EVENTS"],
                                              "--rate", str(rate), "--seconds", str(secs),
                                              "--users", str(ctx.args.users), "--partitions",
                                              str(ctx.parts), "--skip", str(skip),
                                              "--sent-log", str(sent_log)], {})
            cpu0, machine0 = proc.cpu_s(), cpu_times()
            while lp.alive():
                await asyncio.sleep(0.2)
            cpu1, machine1 = proc.cpu_s(), cpu_times()
            await asyncio.sleep(ctx.args.paced_drain_s)
            stop.set()
            await consumer
            lp.stop()
            skip += n
            stats_lines = [ln for ln in lp.log_text().splitlines() if ln.startswith("{")]
            pstats = json.loads(stats_lines[-1]) if stats_lines else {}
            sent = orjson.loads(sent_log.read_bytes()) if sent_log.exists() else {}
            t_first = min(sent.values()) if sent else 0
            warm_ns = int(ctx.args.paced_warmup * 1e9)
            e2e, emit = [], []
            by_second: dict[int, list[float]] = {}
            for tid, recv_ns, ts_ms in got:
                s = sent.get(tid)
                if s is None or s - t_first < warm_ns:
                    continue
                e2e.append((recv_ns - s) / 1e6)
                emit.append(ts_ms - s / 1e6)
                by_second.setdefault(int((s - t_first) // 1e9), []).append(e2e[-1])
            if ctx.args.keep_logs:     # per record, to line up stalls with other logs
                (ctx.workdir / f"latency-{label}.json").write_bytes(orjson.dumps(
                    [(sent[tid], recv_ns, ts_ms) for tid, recv_ns, ts_ms in got if tid in sent]))
            matched = sum(1 for tid, _, _ in got if tid in sent)
            run = {
                "target_rate": rate, "producer": pstats, "opened_received": len(got),
                "opened_matched": matched, "samples_after_warmup": len(e2e),
                "p50_ms": round(pct(e2e, 0.5), 2) if e2e else None,
                "p99_ms": round(pct(e2e, 0.99), 2) if e2e else None,
                "p999_ms": round(pct(e2e, 0.999), 2) if e2e else None,
                "max_ms": round(max(e2e), 2) if e2e else None,
                "emit_p50_ms": round(pct(emit, 0.5), 2) if emit else None,
                "emit_p99_ms": round(pct(emit, 0.99), 2) if emit else None,
                # per second of sending: [p50, max] ms, to tell a steady queue from stalls
                "timeline_p50_max_ms": {sec: [round(pct(v, 0.5), 1), round(max(v), 1)]
                                        for sec, v in sorted(by_second.items())},
                # worker, broker, load generator and this consumer share the machine
                "machine_busy_cores": busy_cores(machine0, machine1),
                "machine_cores": os.cpu_count(),
                "w_cpu_share": round((cpu1 - cpu0) / pstats["seconds"], 2)
                if pstats.get("seconds") and cpu0 is not None and cpu1 is not None else None,
                "load_before": before, "load_after": loadavg(),
            }
            res["runs"][label] = run
            log(f"latency {label} @ {rate:,.0f}/s (achieved {pstats.get('achieved_rate')}): "
                f"p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, {len(e2e):,} samples")
    finally:
        res["exit_code"] = proc.stop()
        await load.delete_topics_matching(env["WORKER_APP_ID"], ctx.bootstrap)
    return res


# -- state: memory, close lateness, cold recovery (W) -----------------------------------------
def rss_slope(points: list[tuple[int, int]]) -> float | None:
    """Least-squares slope of RSS (bytes) against open sessions; None without spread."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


async def read_closed(ctx: Ctx, topic: str, start: dict, until: float) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=ctx.bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    out = []
    try:
        tps = [TopicPartition(topic, p) for p in range(ctx.parts)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start.get(tp.partition, 0))
        while time.time() < until:
            batches = await consumer.getmany(timeout_ms=100)
            now_ms = time.time() * 1000
            for records in batches.values():
                for r in records:
                    v = orjson.loads(r.value)
                    out.append((v.get("closed_at"), v.get("reason"), r.timestamp, now_ms))
    finally:
        await consumer.stop()
    return out


async def probe_opened(ctx: Ctx, topic: str, start: dict, probe_id: str, timeout: float) -> float | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=ctx.bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(ctx.parts)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start.get(tp.partition, 0))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for r in records:
                    if probe_id.encode() in r.value:
                        return time.time()
        return None
    finally:
        await consumer.stop()


async def end_per_partition(offs: Offsets, topic: str, parts: int) -> dict[int, int]:
    got = await offs.consumer.end_offsets([TopicPartition(topic, p) for p in range(parts)])
    return {tp.partition: off for tp, off in got.items()}


async def http_status(http, url: str) -> int | None:
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=1)) as resp:
            return resp.status
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return None


LOG_MARKS = {  # first log line of each step of a (Faust) worker's start, when logged
    "joining_group": "(Re-)joining group",
    "joined_group": "Joined group",
    "partitions_assigned": "Executing _on_partitions_assigned",
    "restore_start": "Restoring state from changelog topics",
    "restore_done": "Done reading from changelog topics",
    "state_rebuilt": "recovered: own events partitions",
    "worker_ready": "Worker ready",
}
_LOG_TS = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\]")
_JSON_TS = re.compile(r'"ts":\s*"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z"')


def _line_time(line: str) -> float | None:
    m = _LOG_TS.match(line)
    if m:   # Faust's text format, local time
        return time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000
    m = _JSON_TS.search(line)
    if m:   # JSON lines, UTC
        import calendar
        frac = float("0." + m.group(2)) if m.group(2) else 0.0
        return calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + frac
    return None


def faust_log_marks(text: str) -> dict[str, float]:
    """Epoch time of the first log line of each LOG_MARKS step."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        for name, needle in LOG_MARKS.items():
            if name not in out and needle in line:
                t = _line_time(line)
                if t is not None:
                    out[name] = t
    return out


async def w_ready(ctx: Ctx, http, offs, proc: Proc, env: dict, port: int, timeout: float,
                  t0: float | None = None, opened_from: dict | None = None) -> dict:
    """Until W processes a new event: a probe event (a new user's message, ts now) is
    produced and its session-opened awaited. Also notes when /readyz first answered 200
    and what the log says. Times are seconds since ``t0`` (default: the process start)."""
    t0 = proc.started if t0 is None else t0
    probe_id = f"probe-{uuid.uuid4().hex[:10]}"
    probe = {"event_id": probe_id, "app_id": "app-0", "user_id": probe_id,
             "ts": int(time.time() * 1000), "type": "user_message", "channel": "web",
             "intent": "CheckBalance", "input_valid": True}
    if opened_from is None:
        opened_from = await end_per_partition(offs, env["TOPIC_OPENED"], ctx.parts)
    task = asyncio.create_task(probe_opened(ctx, env["TOPIC_OPENED"], opened_from, probe_id,
                                            timeout))
    await load.produce(env["TOPIC_EVENTS"], [(b"app-0:" + probe_id.encode(), orjson.dumps(probe))],
                       ctx.parts, ctx.bootstrap)
    t_readyz = None
    while not task.done():
        if t_readyz is None and await http_status(http, f"http://127.0.0.1:{port}/readyz") == 200:
            t_readyz = time.time()
        if not proc.alive():
            task.cancel()
            raise RuntimeError(f"{proc.name} exited with {proc.p.returncode}; log tail:\n"
                               f"{proc.log_text()[-1500:]}")
        await asyncio.sleep(POLL_S)
    t_probe = task.result()
    if t_probe is None:
        raise RuntimeError(f"{proc.name}: no session-opened for a probe event in {timeout} s; "
                           f"log tail:\n{proc.log_text()[-1500:]}")
    return {"probe_opened_s": round(t_probe - t0, 2),
            "readyz_s": round(t_readyz - t0, 2) if t_readyz else None,
            "log_marks_s": {k: round(v - t0, 2) for k, v in faust_log_marks(proc.log_text()).items()}}


def _restore_s(marks: dict) -> float | None:
    """Seconds from partition assignment (or restore start) to the state rebuilt."""
    start = marks.get("restore_start", marks.get("partitions_assigned"))
    end = max([marks[k] for k in ("restore_done", "state_rebuilt") if k in marks], default=None)
    return None if start is None or end is None else max(0.0, end - start)


def store_label(store: str) -> str:
    return store.split(":", 1)[0]


async def bench_state(ctx: Ctx, http, offs, store: str) -> dict:
    """Open sessions in four steps (RSS per step), close lateness, then kill -9 and
    restart: cold from the changelog with the memory store, warm from the same state
    directory with RocksDB."""
    a = ctx.args
    n_open = a.open_sessions
    lateness_ms = int(dict(x.partition("=")[::2] for x in a.worker_env).get(
        "ALLOWED_LATENESS_MS", 2000))
    port = free_port()
    sub = "state" if store == a.store else f"state-{store_label(store)}"
    env = w_env(ctx, sub, port, DEFAULT_INACTIVITY_MINUTES=a.state_inactivity_min,
                STORE=store)
    # static membership, as deployed for fast restarts (README: WORKER_INSTANCE_ID); the
    # restarted process takes the partitions back without waiting for the session
    # timeout. --worker-env WORKER_INSTANCE_ID= measures dynamic membership instead.
    env.setdefault("WORKER_INSTANCE_ID", f"bench-state-{port}")
    await create_w_topics(ctx, env)
    res: dict = {"open_target": n_open, "store": store, "load_before": loadavg(),
                 "allowed_lateness_ms": lateness_ms}
    proc = ctx.start(f"W-{sub}", [PY, "-m", "worker", "run"], env)
    proc2 = None
    try:
        res["ready"] = await w_ready(ctx, http, offs, proc, env, port, 180)
        await asyncio.sleep(3)
        res["rss_idle_bytes"] = rss0 = proc.rss()
        margin_ms = int(a.state_margin_s * 1000)
        t_base = time.time()
        records = load.state_records(n_open, int(t_base * 1000),
                                     a.state_inactivity_min * 60_000, margin_ms)
        # Four steps (a quarter of the users each): the least-squares slope of RSS against
        # open sessions over the four readings is the marginal cost of a session, free of
        # fixed costs (buffers, imports). (Two readings made a noisy slope: 498 B and
        # 664 B in two runs whose total RSS said the opposite.)
        cuts = [n_open * k // 4 for k in range(5)]
        progress = await pick_w_progress(http, offs, port, env["WORKER_APP_ID"],
                                         env["TOPIC_EVENTS"], proc, timeout=5)
        steps = []
        for upto, chunk in ((cuts[k + 1], records[cuts[k]:cuts[k + 1]]) for k in range(4)):
            load_stats = await load.produce(env["TOPIC_EVENTS"], chunk, ctx.parts, ctx.bootstrap)
            got = await watch(progress, upto + 1, a.drain_timeout, proc, http, offs)  # + probe
            if not got["complete"]:
                raise PhaseError(f"W did not process the {upto:,} state events in "
                                 f"{a.drain_timeout} s (alive: {proc.alive()}); log tail:\n"
                                 f"{proc.log_text()[-1500:]}", res)
            caught_up = time.time()
            await asyncio.sleep(a.state_settle_s)
            outs = await offs.end_by_topic([env["TOPIC_OPENED"], env["TOPIC_CLOSED"]], ctx.parts)
            steps.append({"events": upto, "load": load_stats, "watch": got, "rss_bytes": proc.rss(),
                          "open": outs[env["TOPIC_OPENED"]] - outs[env["TOPIC_CLOSED"]],
                          "closed": outs[env["TOPIC_CLOSED"]]})
        del records
        res["steps"] = steps
        res["watch"] = steps[-1]["watch"]
        closed_start = await end_per_partition(offs, env["TOPIC_CLOSED"], ctx.parts)
        res["rss_loaded_bytes"] = rss1 = steps[-1]["rss_bytes"]
        res["open_sessions"] = n_now = steps[-1]["open"]
        res["closed_before_window"] = steps[-1]["closed"]
        if n_now > 0 and rss0 and rss1:
            res["bytes_per_open_session_delta"] = round((rss1 - rss0) / n_now)
            res["rss_total_per_open_session"] = round(rss1 / n_now)
            slope = rss_slope([(st["open"], st["rss_bytes"]) for st in steps])
            if slope is not None:
                res["bytes_per_open_session"] = round(slope)
        # close lateness: closes whose deadline falls in the window, emitted while caught
        # up; the first deadlines are at t_base + margin (+ allowed lateness)
        w0 = max(caught_up + a.state_settle_s, t_base + a.state_margin_s + lateness_ms / 1000 + 1)
        if w0 > time.time():
            await asyncio.sleep(w0 - time.time())
        closes = await read_closed(ctx, env["TOPIC_CLOSED"], closed_start, w0 + a.close_seconds + 3)
        late, late_recv = [], []
        reasons: dict = {}
        for closed_at, reason, ts_ms, recv_ms in closes:
            reasons[str(reason)] = reasons.get(str(reason), 0) + 1
            if closed_at is None or reason != "inactivity":
                continue
            due = closed_at + lateness_ms
            if w0 * 1000 <= due <= (w0 + a.close_seconds) * 1000:
                late.append((ts_ms - due) / 1000)
                late_recv.append((recv_ms - due) / 1000)
        res["close"] = {"window_s": a.close_seconds, "closes": len(late),
                        "closed_records_read": len(closes), "reasons": reasons,
                        "due_minus_window_start_s": [
                            round((c[0] + lateness_ms) / 1000 - w0, 3) for c in closes[:3]
                            if c[0] is not None],
                        "p50_s": round(pct(late, 0.5), 3) if late else None,
                        "p99_s": round(pct(late, 0.99), 3) if late else None,
                        "max_s": round(max(late), 3) if late else None,
                        "received_p99_s": round(pct(late_recv, 0.99), 3) if late_recv else None,
                        "definition": "closed record timestamp - (closed_at + allowed lateness)"}
        # cold recovery
        opened_start = await end_per_partition(offs, env["TOPIC_OPENED"], ctx.parts)
        outs = await offs.end_by_topic([env["TOPIC_OPENED"], env["TOPIC_CLOSED"]], ctx.parts)
        res["open_at_kill"] = outs[env["TOPIC_OPENED"]] - outs[env["TOPIC_CLOSED"]]
        proc.stop(signal.SIGKILL)
        t0 = time.time()
        proc2 = ctx.start(f"W-{sub}-restart", [PY, "-m", "worker", "run"], env)
        try:
            ready = await w_ready(ctx, http, offs, proc2, env, port, a.recovery_timeout,
                                  t0=t0, opened_from=opened_start)
        except RuntimeError as err:
            raise PhaseError(f"cold restart: {err}", res) from None
        rec = {"probe_opened_s": ready["probe_opened_s"], "readyz_s": ready["readyz_s"],
               "breakdown_s": ready["log_marks_s"], "sessions": res["open_at_kill"],
               "store": store,
               "membership": "static" if env["WORKER_INSTANCE_ID"] else "dynamic"}
        main_s = rec["probe_opened_s"]
        if main_s is not None and rec["sessions"]:
            scale = 1_000_000 / max(rec["sessions"], 1)
            b = rec["breakdown_s"]
            if rec["sessions"] >= 950_000:
                rec["s_per_1m"] = round(main_s * scale, 2)
            elif (restore := _restore_s(b)) is not None:
                # Only the changelog restore (and the rebuild from it) grows with the
                # state; start-up, the consumer group's wait for the dead member and the
                # restore's fixed cost (measured at the first, empty start) do not.
                fixed = min(restore, _restore_s(res["ready"]["log_marks_s"]) or 0.0)
                rec["restore_s"] = round(restore, 2)
                rec["restore_fixed_s"] = round(fixed, 2)
                rec["s_per_1m"] = round(main_s + (restore - fixed) * (scale - 1), 2)
                rec["s_per_1m_extrapolated"] = True
            else:
                rec["s_per_1m"] = round(main_s * scale, 2)
                rec["s_per_1m_extrapolated"] = True
        res["recovery"] = rec
    finally:
        res["exit_code"] = proc.stop()
        if proc2 is not None:
            res["restart_exit_code"] = proc2.stop()
        res["load_after"] = loadavg()
        await load.delete_topics_matching(env["WORKER_APP_ID"], ctx.bootstrap)
    return res


# -- report ----------------------------------------------------------------------------------
def median_rate(runs: list[dict]) -> float | None:
    vals = [r["events_per_s"] for r in runs if r.get("events_per_s")]
    return statistics.median(vals) if vals else None


def verdict(ok: bool | None, note: str = "") -> str:
    if ok is None:
        return "pending" + (f" ({note})" if note else "")
    return ("met" if ok else "**MISSED**") + (f" ({note})" if note else "")


def state_rows(row, st: dict, store: str) -> None:
    """Close lateness, RSS per open session and recovery of one store. The RSS and
    recovery floors are the memory store's (the issue sets "≤ 500 B per open session
    (memory store)" and a cold recovery); RocksDB's figures are shown beside them, and
    its restart is a warm one (same state directory)."""
    memory = store.startswith("memory")
    tag = f"{store_label(store)}, "
    n_open = st.get("open_sessions")
    close = st.get("close") or {}
    at_scale = bool(n_open and n_open >= 0.95 * FLOORS["close_at_open"])
    c99 = close.get("p99_s")
    if c99 is None:
        c_met = verdict(None)
    elif c99 > FLOORS["close_p99_s"]:
        c_met = verdict(False)
    elif at_scale:
        c_met = verdict(True)
    else:
        c_met = f"not proven (≤ 1 s at {n_open:,} open; the floor is at 1M: run --big)"
    row(f"close lateness p99 ({tag}{n_open:,} open)" if n_open
        else f"close lateness p99 ({store_label(store)})",
        f"{c99:.3f} s ({close.get('closes', 0):,} closes)" if c99 is not None else "—",
        f"≤ {FLOORS['close_p99_s']:.0f} s at 1M open", c_met)
    bps = st.get("bytes_per_open_session")
    rss = [step["rss_bytes"] for step in st.get("steps") or []]
    fell = any(b < a for a, b in zip(rss, rss[1:]))     # memory went back to the system
    rss_met = (verdict(None) if bps is None else
               f"not shown (RSS fell between readings: {', '.join(f'{x / 1e6:,.0f}' for x in rss)} MB)"
               if fell else verdict(bps <= FLOORS["bytes_per_session"]))
    row(f"RSS per open session ({tag}{n_open:,} open)" if n_open
        else f"RSS per open session ({store_label(store)})",
        f"{bps:,} B (RSS slope over {len(st['steps'])} readings, {st['steps'][0]['open']:,} → {n_open:,} open; "
        f"ΔRSS since idle / open: {st.get('bytes_per_open_session_delta', 0):,} B)"
        if bps is not None else "—",
        f"≤ {FLOORS['bytes_per_session']} B" if memory else "(info: the floor is the memory store's)",
        rss_met if memory else "—")
    rec = st.get("recovery") or {}
    s1m = rec.get("s_per_1m")
    if s1m is None:
        r_met = verdict(None)
    elif rec.get("sessions", 0) >= 950_000:
        r_met = verdict(s1m <= FLOORS["recovery_s_per_1m"])
    else:
        r_met = (f"not proven ({rec.get('sessions', 0):,} sessions; extrapolated "
                 f"{'within' if s1m <= FLOORS['recovery_s_per_1m'] else 'over'} the floor: "
                 f"run --big)")
    kind = "cold recovery" if memory else "warm restart, same state directory"
    row(f"{kind} ({tag}{rec.get('sessions', 0):,} sessions, {rec.get('membership', 'dynamic')} "
        "membership, kill -9 → probe event's output)"
        if rec else f"{kind} ({store_label(store)})",
        (f"{rec['probe_opened_s']} s (" + ("extrapolated " if rec.get("s_per_1m_extrapolated")
                                           else "") + f"{s1m} s per 1M)")
        if s1m is not None else "—",
        f"≤ {FLOORS['recovery_s_per_1m']:.0f} s per 1M" if memory else "(info)",
        r_met if memory else "—")


def build_table(res: dict) -> tuple[str, list[dict]]:
    rows: list[dict] = []
    p, n, w = res.get("P_rate"), res.get("N_rate"), res.get("W_rate")

    def row(figure, value, floor, met):
        rows.append({"figure": figure, "value": value, "floor": floor, "met": met})

    fmt = lambda x: f"{x:,.0f}" if x is not None else "—"  # noqa: E731
    row("P raw aiokafka passthrough, events/s", fmt(p), "reference", "—")
    row("N naive Faust sessioniser, events/s", fmt(n), "reference", "—")
    row("W worker (1 process), events/s", fmt(w),
        f"≥ {FLOORS['w_rate']:,} (goal {FLOORS['w_goal']:,})",
        verdict(None if w is None else w >= FLOORS["w_rate"],
                "" if w is None else ("goal met" if w >= FLOORS["w_goal"] else "goal not met")))
    wp = w / p if w and p else None
    wn = w / n if w and n else None
    row("W / P", f"{wp:.2f}" if wp else "—", f"≥ {FLOORS['w_over_p']}",
        verdict(None if wp is None else wp >= FLOORS["w_over_p"]))
    row("W / N", f"{wn:.1f}" if wn else "—", f"≥ {FLOORS['w_over_n']:.0f}",
        verdict(None if wn is None else wn >= FLOORS["w_over_n"]))
    lat = (res.get("latency") or {}).get("runs", {})
    for label, floor in (("50%", FLOORS["p99_ms_50"]), ("80%", None)):
        r = lat.get(label)
        if r and r.get("p99_ms") is not None:
            ach = (r.get("producer") or {}).get("achieved_rate")
            value = f"p50 {r['p50_ms']:.1f} ms / p99 {r['p99_ms']:.1f} ms @ {ach or r['target_rate']:,.0f}/s"
            if r.get("machine_busy_cores") is not None:
                notes = [f"W {r.get('w_cpu_share')} core", f"machine busy "
                         f"{r['machine_busy_cores']} of {r.get('machine_cores')} cores"]
                behind = (r.get("producer") or {}).get("max_behind_ms")
                if behind is not None:
                    # the load generator's own pauses count in the latency: shown, not hidden
                    notes.append(f"load generator at most {behind:.0f} ms behind")
                value += f" ({'; '.join(notes)})"
        else:
            value = "—"
        row(f"produce → session-opened latency at {label} of W max", value,
            f"p99 ≤ {floor:.0f} ms" if floor else "(info)",
            verdict(None if not r or r.get("p99_ms") is None else r["p99_ms"] <= floor)
            if floor else "—")
    # results written before the state phase ran per store hold one "state"
    states = res.get("states") or ({res["state"].get("store", "memory://"): res["state"]}
                                   if res.get("state") else {"memory://": {}})
    for store, st in states.items():
        state_rows(row, st, store)
    lines = ["| figure | value | floor | met? |", "|---|---|---|---|"]
    lines += [f"| {r['figure']} | {r['value']} | {r['floor']} | {r['met']} |" for r in rows]
    notes = []
    phases = [(phase, res.get(phase)) for phase in ("P", "N", "W", "latency")]
    phases += [(f"state {store}", st) for store, st in states.items()]
    for phase, got in phases:
        for item in (got if isinstance(got, list) else [got] if got else []):
            if item.get("error"):
                notes.append(f"- {phase} failed: {item['error'].splitlines()[0][:300]}")
    for phase in ("P", "N", "W"):
        for item in res.get(phase) or []:
            w = item.get("watch") or {}
            if w and not w.get("complete"):
                notes.append(f"- {phase}: did not finish its backlog ({w.get('processed')} of "
                             f"{w.get('expect')} records)")
    if notes:
        lines += ["", "Failures (figures above are pending, not met):"] + notes
    args = res.get("meta", {}).get("args", {})
    sizes = []
    for phase, size in (("P", args.get("events")), ("N", args.get("naive_events")),
                        ("W", args.get("events"))):
        runs = [r for r in res.get(phase) or [] if r.get("events_per_s")]
        if runs:
            cpu = [r["watch"].get("events_per_cpu_s") for r in runs if r["watch"].get("events_per_cpu_s")]
            sizes.append(f"{phase}: backlog of {size:,} events, {len(runs)} run(s), median"
                         + (f"; {statistics.median(cpu):,.0f} events per CPU-second" if cpu else ""))
    if sizes:
        lines += ["", "Throughput = records / time from first to last processed record. "
                  + " · ".join(sizes) + "."]
    return "\n".join(lines), rows
    return "\n".join(lines), rows


# -- main ------------------------------------------------------------------------------------
async def broker_ok(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 10)
        await admin.close()
        return True
    except Exception:  # noqa: BLE001
        return False


class PhaseError(RuntimeError):
    """A phase failed; ``partial`` holds what it measured before."""

    def __init__(self, message: str, partial: dict) -> None:
        super().__init__(message)
        self.partial = partial


async def guarded(name: str, coro) -> dict:
    """Run one phase; a failure is recorded in its result (and the run goes on)."""
    try:
        return await coro
    except PhaseError as err:
        log(f"{name} FAILED: {err}")
        return {**err.partial, "error": str(err)}
    except Exception as err:  # noqa: BLE001
        log(f"{name} FAILED: {err!r}")
        return {"error": repr(err)[:4000]}


async def amain(args) -> dict:
    if not await broker_ok(args.bootstrap):
        raise SystemExit(f"no Kafka broker at {args.bootstrap}: `make kafka-up` "
                         "(or bash deploy/kafka-local/start.sh) first")
    tag = f"bench-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
    ctx = Ctx(args, tag, workdir)
    systems = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    res: dict = {"meta": {
        "tag": tag, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True).stdout.strip(),
        "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "load_start": loadavg(), "args": {k: v for k, v in vars(args).items()},
    }}
    log(f"run {tag}; work dir {workdir}; load average {res['meta']['load_start']}")
    need_backlog = any(s in systems for s in ("P", "N", "W"))
    if need_backlog:
        n = max(args.events if {"P", "W"} & set(systems) else 0,
                args.naive_events if "N" in systems else 0)
        t = time.perf_counter()
        ctx.backlog = load.Backlog(load.generate(n, args.users, args.seed))
        res["meta"]["generate_s"] = round(time.perf_counter() - t, 1)
        log(f"generated {n:,} events for {args.users:,} users in {res['meta']['generate_s']}s")
    try:
        async with aiohttp.ClientSession() as http, Offsets(args.bootstrap) as offs:
            for system, fn in (("P", bench_p), ("N", bench_n), ("W", bench_w)):
                if system not in systems:
                    continue
                runs = []
                for i in range(args.repeat):
                    log(f"{system} run {i + 1}/{args.repeat}")
                    r = await guarded(system, fn(ctx, http, offs, i))
                    runs.append(r)
                    if "error" in r:
                        continue
                    log(f"{system} run {i + 1}: {r.get('events_per_s')} events/s "
                        f"(watch {r['watch']})")
                res[system] = runs
                res[f"{system}_rate"] = median_rate(runs)
            w_rate = res.get("W_rate") or args.latency_base_rate
            if "L" in systems:
                if w_rate:
                    res["latency"] = await guarded("latency", bench_latency(
                        ctx, http, offs, [("50%", 0.5 * w_rate), ("80%", 0.8 * w_rate)]))
                    res["latency"]["base_rate"] = w_rate
                else:
                    log("latency skipped: no W rate (run W or give --latency-base-rate)")
            if "S" in systems:
                res["states"] = {}
                for store in [x.strip() for x in args.state_stores.split(",") if x.strip()]:
                    res["states"][store] = await guarded(
                        f"state {store}", bench_state(ctx, http, offs, store))
    finally:
        for proc in ctx.procs:
            if proc.alive():
                proc.stop(signal.SIGKILL)
        deleted = await load.delete_topics_matching(tag, args.bootstrap)
        res["meta"]["topics_deleted_at_end"] = len(deleted)
        res["meta"]["load_end"] = loadavg()
        res["meta"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if args.keep_logs:
            res["meta"]["workdir"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Kafka benchmark: P (aiokafka passthrough), "
                                 "N (naive Faust), W (the worker); table + JSON")
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    ap.add_argument("--only", default="P,N,W,L,S",
                    help="phases: P, N, W (throughput), L (W latency), S (W state: memory, "
                         "close lateness, recovery); default all")
    ap.add_argument("--events", type=int, default=1_000_000, help="backlog of P and W")
    ap.add_argument("--naive-events", type=int, default=150_000,
                    help="backlog of N (slow: ~1-3k events/s)")
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1, help="throughput runs per system (median)")
    ap.add_argument("--drain-timeout", type=float, default=600.0)
    ap.add_argument("--store", default="memory://", help="store of the W phases")
    ap.add_argument("--state-stores", default=None, metavar="STORE[,STORE]",
                    help="stores of the state phase, in turn (default: --store); "
                         "make bench: memory://,rocksdb://")
    ap.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment of W, e.g. BATCH_MAX=2000 (repeatable)")
    ap.add_argument("--naive-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment of N, e.g. PRODUCER_LINGER=0.01 (Faust reads "
                         "its settings from the environment; for experiments only)")
    ap.add_argument("--paced-seconds", type=float, default=20.0)
    ap.add_argument("--paced-warmup", type=float, default=3.0)
    ap.add_argument("--paced-drain-s", type=float, default=3.0)
    ap.add_argument("--latency-base-rate", type=float, default=None,
                    help="100 %% rate for the latency runs when W's throughput is not measured")
    ap.add_argument("--open-sessions", type=int, default=200_000)
    ap.add_argument("--big", action="store_true",
                    help="state phase at 1M open sessions (1.15M opened)")
    ap.add_argument("--state-inactivity-min", type=int, default=15)
    ap.add_argument("--state-margin-s", type=float, default=20.0)
    ap.add_argument("--state-settle-s", type=float, default=5.0)
    ap.add_argument("--close-seconds", type=float, default=30.0)
    ap.add_argument("--recovery-timeout", type=float, default=300.0)
    ap.add_argument("--results-dir", default=str(REPO / "bench/results"))
    ap.add_argument("--keep-logs", action="store_true", help="keep the work dir with process logs")
    args = ap.parse_args(argv)
    args.state_stores = args.state_stores or args.store
    if args.big:
        # some sessions close during the phase: ~1.09M are still open at the end
        args.open_sessions = max(args.open_sessions, 1_150_000)
        args.drain_timeout = max(args.drain_timeout, 1800.0)
        args.recovery_timeout = max(args.recovery_timeout, 1200.0)

    import logging
    logging.basicConfig(level=logging.WARNING)
    # metadata retries right after topic creation/deletion are expected and harmless
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    res = asyncio.run(amain(args))
    table, rows = build_table(res)
    res["table"] = rows
    meta = res["meta"]
    header = (f"Kafka bench {meta['tag']} (git {meta['git']}, {meta['cpus']} CPUs, "
              f"load average {meta['load_start']} -> {meta['load_end']})")
    print(f"\n{header}\n\n{table}\n")
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data = json.dumps(res, indent=2, default=str)
    (out / f"bench-{stamp}.json").write_text(data)
    (out / "latest.json").write_text(data)
    print(f"wrote {out / f'bench-{stamp}.json'} and {out / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
