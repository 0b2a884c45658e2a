"""Structured JSON-lines logging.

Decisions go at DEBUG, problems at WARNING/ERROR. Never log user text, variable values or
raw user ids: pass ids through ``hash_id`` (a keyed, truncated BLAKE2b), which lets an
operator correlate lines of one user without learning who it is.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import time

import orjson

_STD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}
_SALT = os.environ.get("LOG_ID_SALT", "conversation-sessions").encode()


def hash_id(value: str | bytes | None) -> str | None:
    """A stable pseudonym for a user id or key: 12 hex chars of keyed BLAKE2b."""
    if value is None:
        return None
    data = value.encode() if isinstance(value, str) else value
    return hashlib.blake2b(data, digest_size=6, key=_SALT[:64]).hexdigest()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STD and not k.startswith("_"):
                entry[k] = v
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup(level: str | None = None) -> None:
    """Route every logger (ours, faust's, aiokafka's) through one JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("LOG_LEVEL", "INFO")).upper())
    for noisy in ("aiokafka", "faust.transport", "faust.tables.recovery", "mode"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
