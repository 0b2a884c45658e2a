"""The chaos verifier's oracle: what the live worker must publish (``replay`` per input
partition) and the comparison of what it did publish against it (``tests/chaos/chaos.py``,
``tests/integration/test_worker_fuzz.py``)."""
from __future__ import annotations

from collections import Counter

import orjson

from tests.kafka_harness import Output, default_name
from worker.domain import DEAD_LETTER, CoreConfig, SettingsBook
from worker.replay import Replayer

EVENTS = "conversation-events"
SETTINGS = "session-settings"

def replay_per_partition(settings: list[tuple[bytes | None, bytes | None]],
                         events: dict[int, list[tuple[int, bytes | None, bytes | None]]],
                         until: int, cfg: CoreConfig | None = None,
                         book_default=None) -> list[tuple[str, str, dict]]:
    """What the live worker must publish: one ``Replayer`` per events partition (its own
    clock), each with every settings record applied first (the worker loads the whole
    settings topic before it consumes), fed its partition's records in offset order and
    advanced to ``until``; bad settings are dead-lettered once (by the group)."""
    if cfg is None or book_default is None:
        from worker.config import core_config_from_env
        from worker.settings_env import default_settings_from_env
        cfg = cfg or core_config_from_env()
        book_default = book_default or default_settings_from_env(cfg)
    out: list = []
    once = Replayer(cfg, book=SettingsBook(book_default))
    for key, value in settings:
        out.extend(o for o in once.record(SETTINGS, key, value) if o[0] == DEAD_LETTER)
    for p in sorted(events):
        rp = Replayer(cfg, book=SettingsBook(book_default))
        for key, value in settings:
            rp.record(SETTINGS, key, value)
        for _, key, value in events[p]:
            out.extend(rp.record(EVENTS, key, value))
        out.extend(rp.until(until))
    return out


def _norm(topic: str, value: dict, env: dict | None) -> dict:
    if topic != DEAD_LETTER:
        return value
    value = {k: v for k, v in value.items() if k not in ("partition", "offset")}
    if env is not None and value.get("topic") in env.values():
        value["topic"] = default_name(env, value["topic"])
    return value


def compare(actual: list[Output], expected: list[tuple[str, str, dict]],
            env: dict | None) -> dict:
    """Per (topic, key): lost / duplicated / mismatched / unexpected / order errors."""
    def ident(v: dict) -> bytes:
        return orjson.dumps(v, option=orjson.OPT_SORT_KEYS)

    got: dict[tuple, list[bytes]] = {}
    for o in actual:
        got.setdefault((o.topic, o.key or ""), []).append(ident(_norm(o.topic, o.value, env)))
    want: dict[tuple, list[bytes]] = {}
    for topic, key, value in expected:
        want.setdefault((topic, key or ""), []).append(ident(_norm(topic, value, None)))

    r = Counter()
    per_topic: dict[str, Counter] = {}
    examples: dict[str, list] = {"lost": [], "mismatched": [], "unexpected": [],
                                 "non_identical_duplicates": [], "order": [],
                                 "duplicated": []}
    for tk in set(got) | set(want):
        topic = tk[0]
        pt = per_topic.setdefault(topic, Counter())
        a, e = got.get(tk, []), want.get(tk, [])
        ca, ce = Counter(a), Counter(e)
        pt["expected"] += len(e)
        pt["published"] += len(a)
        lost = [x for x in ce for _ in range(max(0, ce[x] - ca[x]))]
        extra = [x for x in ca if ce[x] == 0 for _ in range(ca[x])]
        dups = sum(ca[x] - ce[x] for x in ca if ce[x] and ca[x] > ce[x])
        pt["duplicated"] += dups
        if dups and len(examples["duplicated"]) < 5:
            x = next(x for x in ca if ce[x] and ca[x] > ce[x])
            examples["duplicated"].append({"topic": topic, "key": tk[1], "times": ca[x],
                                           "record": orjson.loads(x)})
        # a lost and an unexpected record of the same session: a changed record
        def sid(x: bytes):
            return orjson.loads(x).get("session_id") if topic != DEAD_LETTER else None
        lost_sids = Counter(sid(x) for x in lost if sid(x))
        changed = 0
        for x in set(extra):
            s = sid(x)
            if s and lost_sids[s] > 0:
                lost_sids[s] -= 1
                changed += 1
                if len(examples["mismatched"]) < 5:
                    examples["mismatched"].append({"topic": topic, "key": tk[1],
                                                   "got": orjson.loads(x)})
        pt["mismatched"] += changed
        pt["lost"] += len(lost) - changed
        pt["unexpected"] += len(extra) - changed
        # two different values for one (topic, key, session_id) that replay has once
        if topic != DEAD_LETTER:
            vals: dict = {}
            for x in ca:
                vals.setdefault(sid(x), set()).add(x)
            wvals = Counter(sid(x) for x in ce)
            for s, vs in vals.items():
                if len(vs) > max(1, wvals[s]):
                    pt["non_identical_duplicates"] += 1
                    if len(examples["non_identical_duplicates"]) < 5:
                        examples["non_identical_duplicates"].append(
                            {"topic": topic, "key": tk[1], "session_id": s})
        if lost and len(examples["lost"]) < 5:
            examples["lost"].append({"topic": topic, "key": tk[1], "want": orjson.loads(lost[0])})
        if extra and len(examples["unexpected"]) < 5:
            examples["unexpected"].append({"topic": topic, "key": tk[1],
                                           "got": orjson.loads(extra[0])})
        # order: first occurrences of the published records, in publication order
        firsts = list(dict.fromkeys(a))
        if not lost and not extra and firsts != list(dict.fromkeys(e)):
            pt["order_errors"] += 1
            if len(examples["order"]) < 5:
                examples["order"].append({"topic": topic, "key": tk[1]})
    for pt in per_topic.values():
        r.update(pt)
    lifecycle = [t for t in per_topic if t != DEAD_LETTER]
    totals = {k: r[k] for k in ("expected", "published", "lost", "duplicated", "mismatched",
                                "unexpected", "non_identical_duplicates", "order_errors")}
    totals["lifecycle_mismatched"] = sum(per_topic[t]["mismatched"] + per_topic[t]["unexpected"]
                                         for t in lifecycle)
    totals["all_duplicates_identical"] = (r["non_identical_duplicates"] == 0
                                          and r["mismatched"] == 0 and r["unexpected"] == 0)
    return {"totals": totals,
            "per_topic": {t: dict(c) for t, c in sorted(per_topic.items())},
            "examples": {k: v for k, v in examples.items() if v}}


def table(report: dict) -> str:
    cols = ("expected", "published", "lost", "duplicated", "mismatched", "unexpected",
            "non_identical_duplicates", "order_errors")
    head = ["topic"] + [c.replace("non_identical_duplicates", "non-ident dup")
                        .replace("order_errors", "order") for c in cols]
    rows = [[t] + [str(c.get(k, 0)) for k in cols] for t, c in report["per_topic"].items()]
    rows.append(["TOTAL"] + [str(report["totals"][k]) for k in cols])
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*r) for r in [head] + rows)
