"""The hot-path shortcut (``rules.fast_activity``) must be invisible: the same synthetic
traffic through the core with and without it gives byte-identical outputs and state."""
import orjson

from bench.synthetic import APPS, events
from worker.codec import decode_event, decode_settings
from worker.domain import CoreConfig, PartitionSessions, SettingsBook
from worker.domain.state import to_wire

NOW = 1_800_000_000_000


def _run(fast_path: bool, records) -> tuple[bytes, bytes]:
    cfg = CoreConfig()
    book = SettingsBook()
    for app, s in APPS:
        book.put(app, decode_settings(app.encode(), orjson.dumps(s), cfg)[1])
    part = PartitionSessions(cfg, book)
    part.fast_path = fast_path
    outs = []
    for key, value in records:
        outs.extend(part.on_event(decode_event(key, value, NOW)))
    outs.extend(part.advance_to(NOW))
    state = {k: to_wire(st) for k, st in sorted(part.states.items())}
    return orjson.dumps(outs), orjson.dumps([state, dict(part.stats)])


def test_fast_path_gives_the_same_outputs_and_state_as_the_full_rules_R1_R3_R22():
    records = [(f"{e['app_id']}:{e['user_id']}".encode(), orjson.dumps(e))
               for e in events(30_000, users=1_500, seed=11)]
    fast = _run(True, records)
    full = _run(False, records)
    assert fast[0] == full[0]
    assert fast[1] == full[1]
    assert len(orjson.loads(fast[0])) > 1_000   # the log really exercised sessions


def test_open_session_count_follows_opens_and_closes_and_survives_a_restore():
    """The metrics gauge of open sessions is kept incrementally (no scan of all keys)."""
    records = [(f"{e['app_id']}:{e['user_id']}".encode(), orjson.dumps(e))
               for e in events(5_000, users=400, seed=3)]
    cfg = CoreConfig()
    book = SettingsBook()
    for app, s in APPS:
        book.put(app, decode_settings(app.encode(), orjson.dumps(s), cfg)[1])
    part = PartitionSessions(cfg, book)
    for i, (key, value) in enumerate(records):
        part.on_event(decode_event(key, value, NOW))
        if i % 997 == 0:
            assert part.open_sessions == sum(st.sid is not None for st in part.states.values())
    restored = PartitionSessions(cfg, book)
    for key, st in part.states.items():
        restored.load(key, st)
    assert restored.open_sessions == part.open_sessions > 0
    part.advance_to(NOW)
    assert part.open_sessions == 0
