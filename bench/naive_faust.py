"""N: a naive Faust sessioniser — what most Faust users would write first.

One agent iterating the events one by one (``async for``) as ``faust.Record`` models
(Faust's default JSON codec), a changelog-backed Table write per event holding a session
dict per key, ``await topic.send()`` for session-opened, and an ``@app.timer(1.0)``
that scans the whole table for expired sessions and sends their session-closed record.
It implements far fewer rules than the worker (no dedupe, modes, upgrades, settings
topic, notifications, clearing, dead letters): it is the baseline, not a competitor.

The clock is stream time (the greatest event ts seen), so that a replayed backlog closes
sessions by event time like the worker does. (With ``time.time()`` every session of an
old backlog would look expired at once and be closed on every scan; that would only make
this baseline slower.) A Faust table cannot be written from a timer ("Cannot modify table
outside of agent/stream"), so the timer remembers what it closed in a set and the agent
replaces the session at that key's next event.

    TOPIC_EVENTS=… TOPIC_OPENED=… TOPIC_CLOSED=… NAIVE_APP_ID=… WEB_PORT=… \
        python bench/naive_faust.py          # = faust worker -l info
``GET /count`` returns the number of events processed (the benchmark polls it).
"""
import os
import sys
from typing import Optional

import faust

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.synthetic import APPS  # noqa: E402

app = faust.App(
    os.environ.get("NAIVE_APP_ID", "naive-sessions"),
    broker="kafka://" + os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
    store="memory://",
    datadir=os.environ.get("STATE_DIR", "var/naive"),
    topic_partitions=int(os.environ.get("TOPIC_PARTITIONS", "8")),
    web_port=int(os.environ.get("WEB_PORT", "6067")),
    consumer_auto_offset_reset="earliest",
)


class Event(faust.Record, serializer="json"):
    event_id: str
    app_id: str
    user_id: str
    ts: int
    type: str
    channel: str
    developer: bool = False
    intent: Optional[str] = None
    input_valid: bool = True


events = app.topic(os.environ.get("TOPIC_EVENTS", "conversation-events"), value_type=Event)
opened = app.topic(os.environ.get("TOPIC_OPENED", "session-opened"), value_serializer="json")
closed = app.topic(os.environ.get("TOPIC_CLOSED", "session-closed"), value_serializer="json")
sessions = app.Table("sessions", default=None)

INACTIVITY_MS = {name: s.get("inactivity_minutes", 15) * 60_000 for name, s in APPS}
stream_time = 0          # greatest event ts seen
processed = 0
announced = set()        # (key, opened_at) of sessions the timer already closed


def closed_record(key: str, s: dict, reason: str) -> dict:
    return {"schema": "session-closed/1", "session_id": s["session_id"],
            "app_id": s["app_id"], "user_id": s["user_id"], "opened_at": s["opened_at"],
            "closed_at": s["last_activity"] + INACTIVITY_MS.get(s["app_id"], 900_000),
            "last_activity_at": s["last_activity"], "reason": reason,
            "interactive": s["interactive"], "channel": s["channel"],
            "user_events": s["user_events"], "agent_events": s["agent_events"]}


@app.agent(events)
async def sessionise(stream):
    global stream_time, processed
    async for event in stream:
        key = f"{event.app_id}:{event.user_id}"
        stream_time = max(stream_time, event.ts)
        s = sessions.get(key)
        if s is not None and event.ts - s["last_activity"] > INACTIVITY_MS.get(event.app_id, 900_000):
            if (key, s["opened_at"]) in announced:
                announced.discard((key, s["opened_at"]))
            else:
                await closed.send(key=key, value=closed_record(key, s, "inactivity"))
            s = None
        if s is None:
            s = {"session_id": f"{key}:{event.ts}", "app_id": event.app_id,
                 "user_id": event.user_id, "opened_at": event.ts, "last_activity": event.ts,
                 "interactive": event.type == "user_message", "channel": event.channel,
                 "user_events": 0, "agent_events": 0}
            await opened.send(key=key, value={
                "schema": "session-opened/1", "session_id": s["session_id"],
                "app_id": event.app_id, "user_id": event.user_id, "opened_at": event.ts,
                "interactive": s["interactive"], "developer": event.developer,
                "channel": event.channel, "trigger": event.type,
                "trigger_event_id": event.event_id, "previous_session_id": None})
        s["last_activity"] = event.ts
        if event.type == "user_message":
            s["user_events"] += 1
            s["interactive"] = True
            s["channel"] = event.channel
        elif event.type == "agent_message":
            s["agent_events"] += 1
        sessions[key] = s
        processed += 1


@app.timer(1.0)
async def expire_sessions():
    for key, s in list(sessions.items()):
        if (stream_time - s["last_activity"] > INACTIVITY_MS.get(s["app_id"], 900_000)
                and (key, s["opened_at"]) not in announced):
            announced.add((key, s["opened_at"]))
            await closed.send(key=key, value=closed_record(key, s, "inactivity"))


@app.page("/count")
async def count(web, request):
    return web.json({"events": processed, "stream_time": stream_time,
                     "sessions": len(sessions)})


if __name__ == "__main__":
    if len(sys.argv) == 1:
        sys.argv += ["worker", "-l", os.environ.get("LOG_LEVEL", "info")]
    app.main()
