"""What a worker costs under paced traffic: its CPU share, fetches and batches a second.

For each rate (events/s) and each variant (extra worker settings, e.g.
``FETCH_MIN_BYTES=1``), one run: fresh topics, ``python -m worker run``, a probe event
until it is processed, then ``bench/load.py paced`` at the rate; once the worker's
``/stats`` shows the traffic arriving, the worker's CPU time and its counters (events,
batches, fetches handed over) are read over ``--seconds``. Rate 0 is an idle worker.
Variants alternate within each rate, so a slow spell of the VM hits both.

    python bench/paced_cpu.py --rates 0,100,1000,5000 --variant FETCH_MIN_BYTES=1 --variant ""

Prints a markdown table and writes ``bench/results/paced-cpu-<timestamp>.json``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import load  # noqa: E402
from bench import run_bench as rb  # noqa: E402


async def stats(http, port: int) -> dict:
    async with http.get(f"http://127.0.0.1:{port}/stats") as r:
        return await r.json()


def counters(s: dict) -> dict:
    return {"events": s["worker"].get("events", 0), "batches": s["worker"].get("batches", 0),
            "fetches": s["consumer"].get("fetches_handed", 0)}


async def one_run(args, rate: float, variant: str) -> dict:
    ns = argparse.Namespace(bootstrap=args.bootstrap, partitions=args.partitions,
                            store="memory://", worker_env=[v for v in variant.split() if v])
    ctx = rb.Ctx(ns, "pcpu" + uuid.uuid4().hex[:6], Path(tempfile.mkdtemp(prefix="paced-cpu-")))
    port = rb.free_port()
    env = rb.w_env(ctx, "c", port)
    await rb.create_w_topics(ctx, env)
    await rb.produce_settings(ctx, env["TOPIC_SETTINGS"])
    proc = ctx.start("W", [rb.PY, "-m", "worker", "run"], env)
    lp = None
    try:
        async with aiohttp.ClientSession() as http:
            async with rb.Offsets(ctx.bootstrap) as offs:
                await rb.w_ready(ctx, http, offs, proc, env, port, 180)
            first = counters(await stats(http, port))["events"]
            if rate:
                # sends for longer than measured: generating the events comes first
                lp = ctx.start("paced", [rb.PY, str(REPO / "bench/load.py"), "--bootstrap",
                                         ctx.bootstrap, "paced", "--topic", env["TOPIC_EVENTS"],
                                         "--rate", str(rate),
                                         "--seconds", str(args.seconds + 15),
                                         "--users", "100000", "--partitions",
                                         str(args.partitions),
                                         "--sent-log", str(ctx.workdir / "sent.json")], {})
                deadline = time.monotonic() + 120
                while counters(await stats(http, port))["events"] <= first:
                    if time.monotonic() > deadline or not lp.alive():
                        raise RuntimeError(f"no paced traffic reached the worker; "
                                           f"{lp.log_text()[-500:]}")
                    await asyncio.sleep(0.2)
            await asyncio.sleep(args.settle)
            c0, t0, m0 = proc.cpu_s(), time.monotonic(), rb.cpu_times()
            s0 = counters(await stats(http, port))
            await asyncio.sleep(args.seconds)
            c1, t1, m1 = proc.cpu_s(), time.monotonic(), rb.cpu_times()
            s1 = counters(await stats(http, port))
    finally:
        if lp is not None:
            lp.stop()
        proc.stop()
        await load.delete_topics_matching(env["WORKER_APP_ID"], ctx.bootstrap)
    secs = t1 - t0
    per_s = {k: round((s1[k] - s0[k]) / secs, 1) for k in s0}
    cpu = (c1 - c0) / secs
    return {"rate": rate, "variant": variant or "(defaults)", "seconds": round(secs, 1),
            "w_cpu_share": round(cpu, 3), "per_s": per_s,
            "cpu_ms_per_batch": round(cpu * 1000 / per_s["batches"], 2)
            if per_s["batches"] else None,
            "machine_busy_cores": rb.busy_cores(m0, m1)}


async def amain(args) -> list[dict]:
    rates = [float(r) for r in args.rates.split(",")]
    variants = args.variant or [""]
    runs = []
    for _ in range(args.repeat):
        for rate in rates:
            for variant in variants:
                run = await one_run(args, rate, variant)
                rb.log(f"{rate:,.0f}/s {run['variant']}: W {run['w_cpu_share']} core, "
                       f"{run['per_s']}")
                runs.append(run)
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--rates", default="0,100,1000,5000", help="events/s, comma-separated")
    ap.add_argument("--variant", action="append", default=[],
                    help='worker settings, space-separated KEY=VALUE ("" = defaults); repeatable')
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--results-dir", default=str(REPO / "bench/results"))
    args = ap.parse_args(argv)
    runs = asyncio.run(amain(args))
    lines = ["| events/s | worker settings | W CPU (cores) | fetches/s | batches/s | "
             "CPU ms per batch | machine busy (of 2) |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['rate']:,.0f} | {r['variant']} | {r['w_cpu_share']} | "
                     f"{r['per_s']['fetches']} | {r['per_s']['batches']} | "
                     f"{r['cpu_ms_per_batch']} | {r['machine_busy_cores']} |")
    print("\n".join(lines))
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"paced-cpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                         capture_output=True, text=True).stdout.strip()
    path.write_text(json.dumps({"git": git, "runs": runs}, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
