"""Deterministic identifiers (R21, R22)."""
from __future__ import annotations

import hashlib
import uuid

_SESSION_NS = uuid.UUID("6f1c2d0e-6a43-4f0b-9a7e-3c1f5b2e8d11")
DIGEST_SIZE = 8


def session_id_bytes(app_id: str, user_id: str, event_id: str) -> bytes:
    """R22: a UUIDv5 of (app_id, user_id, opening event_id), as 16 raw bytes."""
    return uuid.uuid5(_SESSION_NS, f"{app_id}\x1f{user_id}\x1f{event_id}").bytes


def session_id_text(sid: bytes) -> str:
    return str(uuid.UUID(bytes=sid))


def event_digest(event_id: str) -> bytes:
    """R21: 64-bit digest of an event id; a key remembers digests, not the ids."""
    return hashlib.blake2b(event_id.encode(), digest_size=DIGEST_SIZE).digest()


def seen_contains(seen: bytes, digest: bytes) -> bool:
    """Aligned search of a digest in a concatenation of digests."""
    i = seen.find(digest)
    while i != -1:
        if i % DIGEST_SIZE == 0:
            return True
        i = seen.find(digest, i + 1)
    return False


def seen_add(seen: bytes, digest: bytes, limit: int) -> tuple[bytes, int]:
    """Append a digest, keep the last ``limit``; returns (new seen, number dropped)."""
    seen += digest
    excess = len(seen) // DIGEST_SIZE - limit
    if excess > 0:
        return seen[excess * DIGEST_SIZE:], excess
    return seen, 0
