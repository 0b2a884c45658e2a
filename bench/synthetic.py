"""Synthetic, realistic conversation traffic for benchmarks and demos.

Users of several apps hold conversations: an optional on_connect, then user messages and
agent replies separated by short gaps, sometimes auth, context, discard or refresh, and a
long gap between conversations. Events come out in event-time order, ~300 bytes each.
Deterministic for a given seed.
"""
from __future__ import annotations

import heapq
import random
from typing import Iterator

APPS = [  # (app_id, settings)
    ("bank", {"app_id": "bank", "mode": "proactive", "inactivity_minutes": 15,
              "closure": {"behavior": "message", "message": "Your session has ended.",
                          "channels": ["web", "slack"]},
              "close_script": "koreUtil.ClearAuthProfiles(['CoreBanking'])"}),
    ("travel", {"app_id": "travel", "mode": "continue_on_same_intent", "inactivity_minutes": 10}),
    ("retail", {"app_id": "retail", "mode": "proactive", "inactivity_minutes": 5,
                "clear_auth_profiles": True}),
    ("telco", {"app_id": "telco", "mode": "legacy", "inactivity_minutes": 15}),
    ("health", {"app_id": "health", "mode": "proactive", "inactivity_minutes": 30}),
]
CHANNELS = ["web", "web", "web", "slack", "msteams", "sms", "voice", "email"]
INTENTS = ["CheckBalance", "BookFlight", "TrackOrder", "ResetPassword", "PayBill", None]
MINUTE = 60_000


def _conversation(rng: random.Random, app: str, user: str, start: int, seq: list[int]):
    """Yield (ts, event dict) of one conversation."""
    channel = rng.choice(CHANNELS)
    developer = rng.random() < 0.02
    ts = start

    def event(etype: str, **fields) -> tuple[int, dict]:
        seq[0] += 1
        body = {"event_id": f"{app}-{user}-{seq[0]:010d}", "app_id": app, "user_id": user,
                "ts": ts, "type": etype, "channel": channel}
        if developer:
            body["developer"] = True
        body.update(fields)
        return ts, body

    if rng.random() < 0.3:
        yield event("on_connect", action=rng.choice(["run_script", "run_message", "trigger_dialog"]),
                    intent=rng.choice(INTENTS))
        ts += rng.randint(1_000, 20_000)
    if rng.random() < 0.05:
        yield event("refresh")
        ts += rng.randint(1_000, 5_000)
    turns = max(1, int(rng.expovariate(1 / 5)))
    intent = rng.choice(INTENTS)
    for turn in range(turns):
        r = rng.random()
        if r < 0.05:
            yield event("auth", auth_profile=rng.choice(["CoreBanking", "Salesforce", "Jira"]))
        elif r < 0.08:
            yield event("discard" if rng.random() < 0.5 else "discard_all")
        else:
            if rng.random() < 0.2:
                intent = rng.choice(INTENTS)
            yield event("user_message", intent=intent, input_valid=rng.random() > 0.05,
                        text_len=rng.randint(10, 200))
        ts += rng.randint(500, 3_000)
        yield event("agent_message", reply_tokens=rng.randint(5, 120))
        if rng.random() < 0.3:
            ts += rng.randint(10, 500)
            yield event("context", dialog={"intent": intent, "node": f"n{turn}"} if intent else None,
                        tags=[f"t{rng.randint(0, 9)}"], sentiment={"positive": round(rng.random(), 3)},
                        variables=[{"name": "cart", "value": rng.randint(0, 99)},
                                   {"name": "token", "value": "x" * 16, "ttl_s": 3600,
                                    "auth_profile": "Salesforce"}])
        ts += int(rng.expovariate(1 / 20_000)) + 1_000


def events(n: int, users: int = 100_000, seed: int = 7, start_ts: int = 1_764_000_000_000,
           span_ms: int = 6 * 3_600_000) -> Iterator[dict]:
    """``n`` events over ``users`` users, in ts order."""
    rng = random.Random(seed)
    seq = [0]
    heap: list = []
    gens = {}
    for u in range(users):
        app = APPS[u % len(APPS)][0]
        user = f"u{u:07d}"
        gen = _conversation(rng, app, user, start_ts + rng.randint(0, span_ms), seq)
        gens[u] = (app, user, gen)
        first = next(gen, None)
        if first is not None:
            heapq.heappush(heap, (first[0], u, first[1]))
    produced = 0
    while heap and produced < n:
        ts, u, body = heapq.heappop(heap)
        yield body
        produced += 1
        app, user, gen = gens[u]
        nxt = next(gen, None)
        if nxt is None:   # next conversation of this user after a long gap
            gen = _conversation(rng, app, user, ts + int(rng.expovariate(1 / (40 * MINUTE))) + MINUTE, seq)
            gens[u] = (app, user, gen)
            nxt = next(gen)
        heapq.heappush(heap, (nxt[0], u, nxt[1]))


def settings_records() -> list[dict]:
    return [{"topic": "session-settings", "key": app, "value": s} for app, s in APPS]
