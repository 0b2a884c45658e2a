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
from typing import Final

_TOKEN: Final = re.compile(r"""
    (?P<space>[ \t\r]+)
  | (?P<sep>[;\n])
  | (?P<name>koreUtil\s*\.\s*(?:ClearAuthProfiles|ClearAllAuthProfiles))
  | (?P<str>'[^'\\\n]*'|"[^"\\\n]*")
  | (?P<punct>[()\[\],])
""", re.VERBOSE)


class ScriptError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CloseScript:
    clear_all: bool = False
    profiles: tuple[str, ...] = ()


def _tokens(source: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            raise ScriptError(f"unexpected text {source[pos:pos + 40]!r}: only "
                              "koreUtil.ClearAuthProfiles([...]) and "
                              "koreUtil.ClearAllAuthProfiles() are allowed")
        kind = m.lastgroup
        assert kind is not None                     # every alternative is a named group
        if kind != "space":
            text = m.group()
            if kind == "name":
                text = "".join(text.split())
            elif kind == "str":
                text = text[1:-1]
            out.append((kind, text))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, kind: str, text: str | None = None) -> str:
        tok = self.peek()
        if tok is None or tok[0] != kind or (text is not None and tok[1] != text):
            want = text or kind
            raise ScriptError(f"expected {want!r}, got {tok[1] if tok else 'end of script'!r}")
        self.i += 1
        return tok[1]

    def names(self) -> list[str]:
        self.take("punct", "[")
        names: list[str] = []
        if self.peek() == ("punct", "]"):
            self.i += 1
            return names
        while True:
            name = self.take("str")
            if not name:
                raise ScriptError("profile names must not be empty")
            names.append(name)
            if self.peek() == ("punct", ","):
                self.i += 1
                continue
            self.take("punct", "]")
            return names


def parse_close_script(source: str) -> CloseScript:
    """Statements separated by ``;`` or newlines; names are quoted strings."""
    p = _Parser(_tokens(source))
    clear_all = False
    profiles: set[str] = set()
    while (tok := p.peek()) is not None:
        if tok[0] == "sep":
            p.i += 1
            continue
        call = p.take("name")
        p.take("punct", "(")
        if call == "koreUtil.ClearAllAuthProfiles":
            clear_all = True
        else:
            profiles.update(p.names())
        p.take("punct", ")")
        nxt = p.peek()
        if nxt is not None and nxt[0] != "sep":
            raise ScriptError(f"expected ';' or a newline after a call, got {nxt[1]!r}")
    return CloseScript(clear_all=clear_all, profiles=tuple(sorted(profiles)))
