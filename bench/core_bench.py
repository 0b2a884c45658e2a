"""``make bench-core``: codec + core throughput without Kafka (issue 2).

Pre-encodes N synthetic events to Kafka-like (key, value) bytes, then times
decode_event + PartitionSessions.on_event + output encoding on one core. Reports
events/s (median of runs) and the memory and wire bytes of state per open session,
whether the mypyc-compiled modules were used (``make native``) and the load average.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc

import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.synthetic import APPS, events  # noqa: E402
import worker.codec  # noqa: E402
import worker.domain.rules  # noqa: E402
from worker.codec import Reject, decode_event, decode_settings, encode  # noqa: E402
from worker.domain import CoreConfig, PartitionSessions, SettingsBook  # noqa: E402
from worker.domain.state import to_wire  # noqa: E402


def build(n: int, users: int) -> list[tuple[bytes, bytes]]:
    return [(f"{e['app_id']}:{e['user_id']}".encode(), orjson.dumps(e)) for e in events(n, users)]


def fresh() -> tuple[CoreConfig, PartitionSessions]:
    cfg = CoreConfig()
    book = SettingsBook()
    for app, s in APPS:
        _, settings = decode_settings(app.encode(), orjson.dumps(s), cfg)
        book.put(app, settings)
    return cfg, PartitionSessions(cfg, book)


def run(records, part: PartitionSessions, now: int, freeze_every: int = 0) -> tuple[int, int]:
    """``freeze_every`` > 0: ``gc.freeze()`` after every that many events, as the worker's
    GC policy does every second (worker.gc_policy)."""
    outs = 0
    dumps = encode
    on_event = part.on_event
    step = freeze_every or len(records)
    for start in range(0, len(records), step):
        for key, value in records[start:start + step]:
            ev = decode_event(key, value, now)
            if type(ev) is Reject:
                continue
            for _topic, _key, out in on_event(ev):
                dumps(out)
                outs += 1
        if freeze_every:
            gc.freeze()
    return outs, len(records)


def open_sessions(part: PartitionSessions) -> int:
    return sum(1 for st in part.states.values() if st.sid is not None)


def native_modules() -> dict:
    """Which implementation this process imported: extension modules (mypyc) or source."""
    files = {m.__name__: os.path.basename(m.__file__) for m in (worker.domain.rules, worker.codec)}
    return {"compiled": all(f.endswith(".so") for f in files.values()), "files": files}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mem-events", type=int, default=200_000,
                    help="events of the traced run that measures memory (tracemalloc is slow)")
    ap.add_argument("--json", default="bench/results/core.json")
    ap.add_argument("--freeze-every", type=int, default=50_000,
                    help="gc.freeze() every N events, like the worker's GC policy freezes "
                         "every second (worker.gc_policy); 0 = CPython's default collector")
    args = ap.parse_args()
    t0 = time.perf_counter()
    records = build(args.events, args.users)
    avg_bytes = sum(len(v) for _, v in records) / len(records)
    print(f"built {len(records):,} events ({avg_bytes:.0f} B avg) in {time.perf_counter() - t0:.1f}s")
    now = int(time.time() * 1000)
    native = native_modules()
    print(f"compiled (mypyc) modules: {'yes' if native['compiled'] else 'NO, pure Python'} "
          f"{native['files']}")
    load_before = os.getloadavg()

    rates, outs = [], 0
    for i in range(args.runs):
        _, part = fresh()
        gc.unfreeze()
        gc.collect()
        if args.freeze_every:
            gc.freeze()         # the input records: long-lived, like the worker's state
        t = time.perf_counter()
        outs, n = run(records, part, now, args.freeze_every)
        dt = time.perf_counter() - t
        rates.append(n / dt)
        print(f"run {i + 1}: {n / dt:,.0f} events/s ({outs:,} outputs, {open_sessions(part):,} open)")

    # Memory: trace a fresh run over a prefix, then attribute what the partition holds
    # (states, deadline index) to its keys and open sessions.
    _, part = fresh()
    gc.unfreeze()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    run(records[:args.mem_events], part, now)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    n_open = open_sessions(part)
    n_keys = len(part.states)
    wire = [len(orjson.dumps(to_wire(st))) for st in part.states.values() if st.sid is not None]
    result = {
        "events": len(records), "users": args.users, "avg_event_bytes": round(avg_bytes),
        "runs": [round(r) for r in rates], "median_events_per_s": round(statistics.median(rates)),
        "outputs": outs, "open_sessions": n_open, "keys_with_state": n_keys,
        "memory_measured_over_events": min(args.mem_events, len(records)),
        "memory_bytes_per_key": round(held / max(1, n_keys)),
        "memory_bytes_per_open_session": round(held / max(1, n_open)),
        "wire_bytes_per_open_session_median": round(statistics.median(wire)) if wire else 0,
        "freeze_every": args.freeze_every,
        "python": sys.version.split()[0],
        "native": native,
        "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps(result, indent=2))
    floor, goal = 150_000, 250_000
    med = result["median_events_per_s"]
    print(f"median {med:,} events/s — floor {floor:,}: {'met' if med >= floor else 'MISSED'}, "
          f"goal {goal:,}: {'met' if med >= goal else 'missed'}")


if __name__ == "__main__":
    main()
