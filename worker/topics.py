"""Create the worker's topics when they are missing, before Faust starts.

Faust only declares its own internal topics (the table changelog), so the input, output
and ticks topics are created here with the admin client. The ticks topic must have
exactly as many partitions as the events topic: Faust's assignor then co-partitions
them (same partition number -> same worker), which is what makes tick ``p`` a clock
signal for events partition ``p``.
"""
from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from .settings_env import WorkerSettings

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36
TICKS_RETENTION_MS = 3_600_000     # ticks are worthless once consumed


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partition counts of the topics in ``names`` that exist. Asks for *all* topics:
    a metadata request naming a missing topic makes a broker with
    auto.create.topics.enable create it, with the broker's default partition count."""
    names = set(names)
    counts = {}
    existing = names.intersection(await admin.list_topics())
    if not existing:
        return counts
    for meta in await admin.describe_topics(sorted(existing)):
        if meta.get("error_code", 0) == 0 and meta.get("partitions"):
            counts[meta["topic"]] = len(meta["partitions"])
    return counts


async def ensure_topics(ws: WorkerSettings, timeout_s: float = 60.0) -> dict[str, int]:
    """Create missing topics; return the partition count of every topic we use."""
    wanted: dict[str, tuple[int, dict]] = {
        ws.topic_events: (ws.partitions, {}),
        ws.topic_settings: (ws.partitions, {"cleanup.policy": "compact"}),
        **{name: (ws.partitions, {}) for name in ws.output_topics.values()},
    }
    admin = AIOKafkaAdminClient(client_id=f"{ws.app_id}-admin", **ws.kafka_kwargs())
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await admin.start()
            break
        except KafkaError as err:
            if asyncio.get_running_loop().time() > deadline:
                raise SystemExit(f"cannot reach Kafka at {ws.bootstrap}: {err!r}") from None
            log.warning("Kafka not reachable yet (%r); retrying", err)
            await asyncio.sleep(1.0)
    try:
        counts = await _partition_counts(admin, list(wanted))
        # The ticks topic follows the events topic's real partition count.
        events_n = counts.get(ws.topic_events, ws.partitions)
        wanted[ws.topic_ticks] = (events_n, {"retention.ms": str(TICKS_RETENTION_MS),
                                             "segment.ms": str(TICKS_RETENTION_MS)})
        counts.update(await _partition_counts(admin, [ws.topic_ticks]))
        missing = [NewTopic(name, n, ws.replication, topic_configs=conf)
                   for name, (n, conf) in wanted.items() if name not in counts]
        if missing:
            response = await admin.create_topics(missing)
            for name, code, *_ in response.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise SystemExit(f"cannot create topic {name}: error code {code}")
            log.info("created topics %s", sorted(t.name for t in missing))
        counts = await _wait_visible(admin, list(wanted), deadline)
    finally:
        await admin.close()
    events_n = counts[ws.topic_events]
    if events_n != ws.partitions:
        log.warning("%s has %d partitions, not TOPIC_PARTITIONS=%d; using %d",
                    ws.topic_events, events_n, ws.partitions, events_n)
    if counts[ws.topic_ticks] != events_n:
        raise SystemExit(f"{ws.topic_ticks} has {counts[ws.topic_ticks]} partitions but "
                         f"{ws.topic_events} has {events_n}: they must be co-partitioned")
    return counts


async def _wait_visible(admin: AIOKafkaAdminClient, names: list[str],
                        deadline: float) -> dict[str, int]:
    while True:
        counts = await _partition_counts(admin, names)
        if all(name in counts for name in names):
            return counts
        if asyncio.get_running_loop().time() > deadline:
            raise SystemExit(f"topics not visible in metadata: {set(names) - set(counts)}")
        await asyncio.sleep(0.2)
