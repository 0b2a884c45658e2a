"""The shape of a ``conversation-events`` record for the codec's fast path (R20).

``msgspec`` parses a record straight into a ``WireEvent``, checking JSON types in C on
the way, without building a dict of the record. It only has to be right for records the
worker accepts: any record it refuses, and any value ``worker.codec`` finds wrong in it,
goes to the reference decoder (orjson + hand-written checks), which alone decides the
dead-letter reason. The defaults are chosen so that an absent required field fails the
codec's checks (empty string, ts 0) and so reaches the reference decoder, while absent
optional fields mean what the contract says (``developer`` false, ``input_valid`` true).

msgspec skips unknown fields without checking that they are UTF-8; ``worker.codec``
checks the bytes of any record that is not plain ASCII first.

Context events (R14) are left to the reference decoder: their dialog, tags, sentiment
and variables are free-form JSON, which msgspec and orjson do not read alike (msgspec
keeps integers beyond 64 bits, which orjson reads as floats and cannot write back).

Kept outside ``worker/codec.py`` because mypyc compiles that module and a ``Struct``
subclass is not a class mypyc can compile.
"""
from __future__ import annotations

import msgspec


class WireEvent(msgspec.Struct, gc=False):
    event_id: str = ""
    app_id: str = ""
    user_id: str = ""
    ts: int = 0
    type: str = ""
    channel: str = ""
    developer: bool = False
    intent: str | None = None
    input_valid: bool = True
    action: str | None = None
    auth_profile: str | None = None


decode_wire = msgspec.json.Decoder(WireEvent).decode
# What msgspec raises for a record it will not turn into a WireEvent (UnicodeDecodeError
# for invalid UTF-8 is a ValueError).
WIRE_ERRORS = (msgspec.MsgspecError, ValueError)
