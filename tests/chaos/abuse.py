"""``python -m tests.chaos.chaos --abuse``: one key, a very long stream, through
``PartitionSessions`` (no broker); its state must stay within the R25 bounds."""
from __future__ import annotations

import time
from collections import Counter

import orjson

from worker.codec import decode_event
from worker.domain import PartitionSessions, SettingsBook
from worker.domain.ids import DIGEST_SIZE

def abuse(n: int = 1_000_000, check_every: int = 10_000, say=print) -> dict:
    """One key receives ``n`` events (messages, auth with new profiles, context with new
    variables and tags): its state must stay within the R25 bounds all along."""
    from worker.config import core_config_from_env
    from worker.settings_env import default_settings_from_env
    cfg = core_config_from_env()
    lim = cfg.limits
    part = PartitionSessions(cfg, SettingsBook(default_settings_from_env(cfg)))
    key, t0, ts = "abuse:one", time.monotonic(), 1_700_000_000_000
    now = int(time.time() * 1000)
    worst = Counter()
    outputs = 0
    for i in range(n):
        ts += 1_000
        kind = i % 8
        v = {"event_id": f"e{i}", "app_id": "abuse", "user_id": "one", "ts": ts,
             "channel": "web", "type": "user_message"}
        if kind == 1:
            v["type"] = "agent_message"
        elif kind == 2:
            v.update(type="auth", auth_profile=f"p{i}")
        elif kind == 3:
            v.update(type="context", tags=[f"t{i}", f"u{i}"], sentiment={f"s{i}": 0.5},
                     dialog={"intent": f"i{i}"},
                     variables=[{"name": f"v{i}", "value": "x" * 32},
                                {"name": f"w{i}", "value": i, "ttl_s": 10**6}])
        ev = decode_event(key.encode(), orjson.dumps(v), now)
        outputs += len(part.on_event(ev))
        if i % check_every == 0 or i == n - 1:
            st = part.states[key]
            sizes = {"seen_bytes": len(st.seen), "variables": len(st.vars or ()),
                     "auth_profiles": len(st.auth or ()), "tags": len(st.tags or ()),
                     "historic_tags": len(st.hist or ()),
                     "sentiment_tones": len(st.sentiment or ())}
            for k, s in sizes.items():
                worst[k] = max(worst[k], s)
    bounds = {"seen_bytes": lim.event_ids * DIGEST_SIZE, "variables": lim.variables,
              "auth_profiles": lim.auth_profiles, "tags": lim.tags,
              "historic_tags": lim.historic_tags, "sentiment_tones": lim.sentiment_tones}
    ok = all(worst[k] <= bounds[k] for k in bounds)
    report = {"events": n, "outputs": outputs, "max_seen": dict(worst), "bounds": bounds,
              "bounded": ok, "runtime_s": round(time.monotonic() - t0, 1),
              "stats": dict(part.stats)}
    say(f"abuse: {n} events for one key in {report['runtime_s']} s; max sizes {dict(worst)} "
        f"vs bounds {bounds}: {'BOUNDED' if ok else 'UNBOUNDED'}")
    return report
