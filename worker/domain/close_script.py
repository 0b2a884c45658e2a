"""R16: the close-script language, parsed strictly (never evaluated).

The language is exactly two calls, as statements separated by ``;`` or newlines:

    koreUtil.ClearAuthProfiles(['Salesforce', "Jira"])
    koreUtil.ClearAllAuthProfiles()

Names are single- or double-quoted strings (no escapes); whitespace is allowed between
tokens. Anything else is a ``ScriptError``, which makes the settings invalid (R19).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_CLEAR_ALL = re.compile(r"koreUtil\s*\.\s*ClearAllAuthProfiles\s*\(\s*\)")
_CLEAR_SOME = re.compile(r"koreUtil\s*\.\s*ClearAuthProfiles\s*\(\s*\[(?P<names>[^\]]*)\]\s*\)")
_NAME = re.compile(r"\s*(?:'([^'\\]*)'|\"([^\"\\]*)\")\s*")


class ScriptError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CloseScript:
    clear_all: bool = False
    profiles: tuple[str, ...] = ()


def _parse_names(text: str) -> list[str]:
    if not text.strip():
        return []
    names = []
    for part in text.split(","):
        m = _NAME.fullmatch(part)
        if m is None or not (m.group(1) or m.group(2)):
            raise ScriptError(f"profile names must be quoted non-empty strings, got {part.strip()!r}")
        names.append(m.group(1) or m.group(2))
    return names


def parse_close_script(source: str) -> CloseScript:
    clear_all = False
    profiles: list[str] = []
    for raw in re.split(r"[;\n]", source):
        stmt = raw.strip()
        if not stmt:
            continue
        if _CLEAR_ALL.fullmatch(stmt):
            clear_all = True
            continue
        m = _CLEAR_SOME.fullmatch(stmt)
        if m is None:
            raise ScriptError(f"unsupported statement {stmt[:80]!r}: only "
                              "koreUtil.ClearAuthProfiles([...]) and "
                              "koreUtil.ClearAllAuthProfiles() are allowed")
        for name in _parse_names(m.group("names")):
            if name not in profiles:
                profiles.append(name)
    return CloseScript(clear_all=clear_all, profiles=tuple(sorted(profiles)))
