"""Deterministic identifiers (R21, R22)."""
from __future__ import annotations

import hashlib
import uuid
from typing import Final

_SESSION_NS: Final = uuid.UUID("6f1c2d0e-6a43-4f0b-9a7e-3c1f5b2e8d11")
_SESSION_NS_BYTES: Final = _SESSION_NS.bytes
DIGEST_SIZE: Final = 8
_EMPTY_DIGEST: Final = hashlib.blake2b(digest_size=DIGEST_SIZE)   # copied: cheaper than a new one


def session_id_bytes(app_id: str, user_id: str, event_id: str) -> bytes:
    """R22: a UUIDv5 of (app_id, user_id, opening event_id), as 16 raw bytes.

    The same bytes as ``uuid.uuid5(_SESSION_NS, name).bytes`` (RFC 4122 §4.3: SHA-1 of
    namespace + name, version 5, RFC variant), without building ``UUID`` objects."""
    name = f"{app_id}\x1f{user_id}\x1f{event_id}".encode()
    raw = bytearray(hashlib.sha1(_SESSION_NS_BYTES + name).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50      # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80      # variant RFC 4122
    return bytes(raw)


def session_id_text(sid: bytes) -> str:
    """``str(uuid.UUID(bytes=sid))``: 8-4-4-4-12 lowercase hex digits."""
    if len(sid) != 16:
        raise ValueError("bytes is not a 16-char string")
    h = sid.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def event_digest(event_id: str) -> bytes:
    """R21: 64-bit BLAKE2b digest of an event id; a key remembers digests, not the ids."""
    h = _EMPTY_DIGEST.copy()
    h.update(event_id.encode())
    return h.digest()


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
