"""Session lookup: ``GET /sessions/{app_id}/{user_id}`` (issue: operable service).

Which events partition holds a key is decided by the *producer's* partitioner (the
channel adapters'), so the worker cannot recompute it reliably; Faust's own routing
(``app.router`` / ``@app.table_route``) hashes keys with Faust's partitioner and could
point at the wrong worker. Instead:

1. **Local**: one dict lookup per locally owned partition (``PartitionRegistry``). The
   read and the view are built synchronously — no ``await`` in between — on the event
   loop that runs the batches, so the answer is the state between two batches, never
   half of one.
2. **Peers** (only when not found locally, and not asked with ``?local=1``): the other
   members of the group, from Faust's partition assignor (the hosts holding the
   sessions table's changelog partitions, i.e. their ``canonical_url``), are asked with
   ``?local=1`` concurrently; the first 200 wins. A peer that does not answer in
   ``PEER_TIMEOUT_S`` counts as not having the key, and the 404 then says how many peers
   failed. With one worker there are no peers and the local answer is final.

``?local=1`` answers from this worker's partitions only (what peers ask each other).
Answers: 200 with ``key_view`` plus ``partition``; 404 ``{"error": "not_found", ...}``;
503 ``{"error": "not_ready", ...}`` when not found while this worker is recovering or
rebalancing (its partitions may not be loaded yet). User ids never reach the logs: only
``hash_id`` of the key.
"""
from __future__ import annotations

import asyncio
import logging

import orjson

from .domain.view import key_view
from .logs import hash_id
from .partitions import PartitionRegistry

log = logging.getLogger(__name__)

PEER_TIMEOUT_S = 2.0


def find_local(registry: PartitionRegistry, app_id: str, user_id: str) -> dict | None:
    """The key's view from the locally owned partitions, or None. Synchronous on
    purpose: atomic with respect to the batches running on the same event loop."""
    key = f"{app_id}:{user_id}"
    for partition, part in registry.items():
        st = part.states.get(key)
        if st is not None and st.app == app_id:
            view = key_view(st, key, registry.book.get(st.app), registry.cfg, part.watermark)
            view["partition"] = partition
            return view
    return None


def peer_urls(app) -> list[str]:
    """Base URLs of the other group members that hold partitions of the sessions
    table, as the partition assignor last distributed them."""
    own = str(app.conf.canonical_url).rstrip("/")
    try:
        hosts = app.assignor.changelog_distribution or {}
    except Exception:            # before the first assignment
        return []
    return sorted({str(url).rstrip("/") for url, tps in hosts.items() if tps} - {own})


async def _ask(app, base: str, app_id: str, user_id: str) -> tuple[int, dict | None]:
    from urllib.parse import quote
    url = f"{base}/sessions/{quote(app_id, safe='')}/{quote(user_id, safe='')}?local=1"
    async with app.http_client.get(url) as resp:
        body = await resp.read()
        return resp.status, (orjson.loads(body) if resp.status == 200 else None)


async def find_on_peers(app, app_id: str, user_id: str) -> tuple[dict | None, int, int]:
    """Ask every peer concurrently; returns (view or None, peers asked, peers failed)."""
    peers = peer_urls(app)
    if not peers:
        return None, 0, 0
    tasks = {asyncio.ensure_future(asyncio.wait_for(_ask(app, p, app_id, user_id),
                                                    PEER_TIMEOUT_S)): p for p in peers}
    failed = 0
    try:
        for fut in asyncio.as_completed(tasks):
            try:
                status, view = await fut
            except Exception as exc:
                failed += 1
                log.warning("session lookup: peer did not answer: %r", exc)
                continue
            if status == 200 and view is not None:
                return view, len(peers), failed
            if status != 404:
                failed += 1
        return None, len(peers), failed
    finally:
        for task in tasks:
            task.cancel()


async def lookup(worker, app_id: str, user_id: str, local_only: bool) -> tuple[int, dict]:
    """(HTTP status, JSON body) for ``GET /sessions/{app_id}/{user_id}``."""
    found = find_local(worker.registry, app_id, user_id)
    key_hash = hash_id(f"{app_id}:{user_id}")
    if found is not None:
        log.debug("session lookup: found locally", extra={"key_hash": key_hash,
                                                          "partition": found["partition"]})
        return 200, found
    asked = failed = 0
    if not local_only:
        view, asked, failed = await find_on_peers(worker.app, app_id, user_id)
        if view is not None:
            log.debug("session lookup: found on a peer", extra={"key_hash": key_hash})
            return 200, view
    log.debug("session lookup: not found", extra={"key_hash": key_hash, "peers": asked})
    body = {"error": "not_found", "app_id": app_id, "user_id": user_id,
            "searched_partitions": sorted(p for p, _ in worker.registry.items()),
            "peers_asked": asked, "peers_failed": failed}
    if not worker.is_ready():
        # partitions may still be recovering: "none" would be a guess
        body["error"] = "not_ready"
        return 503, body
    return 404, body
