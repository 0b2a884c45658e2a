"""``python -m worker replay``: re-sessionise a log of Kafka records offline.

Input: JSON lines ``{"topic": "conversation-events" | "session-settings", "key": "...",
"value": {...} | null}`` or with ``"value_text": "<raw text>"`` instead of ``value``.
Records are processed in file order as partition 0, offsets 0, 1, 2 …; the clock is
stream time minus lateness (R10), never the wall clock (except R20's future-skew check).
Output: one JSON line ``{"topic", "key", "value"}`` per record the worker would publish,
in publication order. No broker and no Faust needed.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import IO, Iterable, Iterator

import orjson

from .codec import (DEFAULT_FUTURE_SKEW_MS, DEFAULT_MAX_BYTES, Reject, dead_letter,
                    decode_event, decode_settings)
from .domain import DEAD_LETTER, CoreConfig, PartitionSessions, SettingsBook
from .domain.outputs import Output

EVENTS = "conversation-events"
SETTINGS = "session-settings"


class Replayer:
    """The worker's per-record logic for one partition, fed from a list of records."""

    def __init__(self, cfg: CoreConfig | None = None, book: SettingsBook | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES,
                 future_skew_ms: int = DEFAULT_FUTURE_SKEW_MS,
                 now_ms: int | None = None) -> None:
        self.cfg = cfg or CoreConfig()
        self.book = book or SettingsBook()
        self.part = PartitionSessions(self.cfg, self.book)
        self.max_bytes = max_bytes
        self.future_skew_ms = future_skew_ms
        self.now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        self.offset = 0

    def record(self, topic: str, key: bytes | None, value: bytes | None) -> list[Output]:
        offset, self.offset = self.offset, self.offset + 1
        if topic == SETTINGS:
            decoded = decode_settings(key, value, self.cfg, self.book.default, self.max_bytes)
            if type(decoded) is Reject:
                return [self._dead(decoded, topic, offset, key, value)]
            app_id, settings = decoded
            self.book.put(app_id, settings)
            return self.part.on_settings_changed(app_id)
        if topic != EVENTS:
            raise ValueError(f"unknown input topic {topic!r}")
        ev = decode_event(key, value, self.now_ms, self.max_bytes, self.future_skew_ms)
        if type(ev) is Reject:
            return [self._dead(ev, topic, offset, key, value)]
        return self.part.on_event(ev)

    def _dead(self, reject: Reject, topic: str, offset: int, key, value) -> Output:
        text_key = key.decode(errors="replace") if key is not None else ""
        return (DEAD_LETTER, text_key, dead_letter(reject, topic, 0, offset, key, value))

    def until(self, ts: int) -> list[Output]:
        return self.part.advance_to(ts)


def parse_line(line: bytes) -> tuple[str, bytes | None, bytes | None]:
    """One input line -> (topic, key bytes, value bytes); raises ValueError when the line
    itself (not the record it carries) is malformed."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        raise ValueError(f"input line is not JSON: {err}") from None
    if type(obj) is not dict or type(obj.get("topic")) is not str:
        raise ValueError("input line must be an object with a topic")
    key = obj.get("key")
    key_bytes = key.encode() if type(key) is str else None
    if "value_text" in obj:
        text = obj["value_text"]
        if type(text) is not str:
            raise ValueError("value_text must be a string")
        value = text.encode("utf-8", errors="surrogateescape")
    else:
        raw = obj.get("value")
        value = None if raw is None else orjson.dumps(raw)
    return obj["topic"], key_bytes, value


def replay(lines: Iterable[bytes], until: int | None = None,
           cfg: CoreConfig | None = None, **kwargs) -> Iterator[Output]:
    rp = Replayer(cfg, **kwargs)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            topic, key, value = parse_line(line)
        except ValueError as err:
            raise ValueError(f"line {number}: {err}") from None
        yield from rp.record(topic, key, value)
    if until is not None:
        yield from rp.until(until)


def write_outputs(outputs: Iterable[Output], out: IO[bytes]) -> int:
    n = 0
    for topic, key, value in outputs:
        out.write(orjson.dumps({"topic": topic, "key": key, "value": value}))
        out.write(b"\n")
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m worker replay",
                                 description="Re-sessionise a JSON-lines log offline.")
    ap.add_argument("file", help="JSON-lines input file, or - for stdin")
    ap.add_argument("--until", type=int, default=None,
                    help="advance the clock (watermark) to TS after the last record")
    ap.add_argument("--lateness-ms", type=int, default=2000, help="allowed lateness (R10)")
    args = ap.parse_args(argv)
    from .config import _int, core_config_from_env
    from .settings_env import default_settings_from_env
    cfg = core_config_from_env(lateness_ms=args.lateness_ms)
    book = SettingsBook(default_settings_from_env(cfg))   # same defaults as the worker
    kwargs = dict(book=book, max_bytes=_int("MAX_RECORD_BYTES", DEFAULT_MAX_BYTES),
                  future_skew_ms=_int("FUTURE_SKEW_MS", DEFAULT_FUTURE_SKEW_MS))
    src = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    try:
        write_outputs(replay(src, args.until, cfg, **kwargs), sys.stdout.buffer)
    except ValueError as err:
        print(f"replay: {err}", file=sys.stderr)
        return 2
    finally:
        if src is not sys.stdin.buffer:
            src.close()
        sys.stdout.buffer.flush()
    return 0
