"""Wait until a Kafka broker answers a metadata request (aiokafka).

Usage: wait_ready.py HOST:PORT [--timeout S] [--pid PID] [--quiet]
Exits 0 once the broker lists itself in metadata; 1 on timeout or if PID dies.
"""

import argparse
import asyncio
import logging
import os
import sys
import time

from aiokafka import AIOKafkaClient


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


async def ready(bootstrap):
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await client.bootstrap()
        return bool(client.cluster.brokers())
    except Exception:
        return False
    finally:
        await client.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("--timeout", type=float, default=90)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    start = time.monotonic()
    while time.monotonic() - start < args.timeout:
        if args.pid and not alive(args.pid):
            print(f"wait_ready: broker pid {args.pid} exited", file=sys.stderr)
            return 1
        if await ready(args.bootstrap):
            if not args.quiet:
                print(f"wait_ready: {args.bootstrap} ready after {time.monotonic() - start:.1f}s")
            return 0
        await asyncio.sleep(0.25)
    print(f"wait_ready: {args.bootstrap} not ready after {args.timeout:.0f}s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        print("wait_ready: interrupted; a started broker keeps running (stop.sh stops it)", file=sys.stderr)
        sys.exit(130)
