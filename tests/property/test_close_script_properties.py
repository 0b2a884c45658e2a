"""R16/R19: the strict close-script parser, over random scripts.

Any script made of the two allowed calls (quoted names of any characters but their own
quote, backslash and newline; any spacing; ';' or newline separators) parses to the union of
its calls; the same script with anything else in it is rejected."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.property.strategies import examples
from worker.domain import CoreConfig, SettingsError, parse_settings
from worker.domain.close_script import ScriptError, parse_close_script

SPACE = st.sampled_from(["", " ", "  ", "\t"])
NAME_CHARS = st.characters(blacklist_characters="'\"\\\n", blacklist_categories=("Cs",))


@st.composite
def quoted(draw):
    name = draw(st.text(NAME_CHARS, min_size=1, max_size=12))
    quote = draw(st.sampled_from(["'", '"']))
    if quote in name:
        quote = "'" if quote == '"' else '"'
    if quote in name:
        name = name.replace(quote, "x")
    return name, f"{quote}{name}{quote}"


@st.composite
def statements(draw):
    """(source text, clear_all, names) of one allowed call."""
    s = lambda: draw(SPACE)   # noqa: E731
    if draw(st.integers(0, 3)) == 0:
        return f"{s()}koreUtil{s()}.{s()}ClearAllAuthProfiles{s()}({s()}){s()}", True, []
    items = draw(st.lists(quoted(), max_size=4))
    inner = ",".join(f"{s()}{q}{s()}" for _, q in items)
    return (f"{s()}koreUtil.ClearAuthProfiles{s()}({s()}[{inner}]{s()}){s()}", False,
            [n for n, _ in items])


@st.composite
def scripts(draw):
    stmts = draw(st.lists(statements(), min_size=1, max_size=4))
    seps = [draw(st.sampled_from([";", "\n", "; ", ";\n", "\n\n"])) for _ in stmts]
    text = "".join(src + sep for (src, _, _), sep in zip(stmts, seps))
    if not draw(st.booleans()):
        text = text.rstrip(";\n ")
    clear_all = any(c for _, c, _ in stmts)
    names = tuple(sorted({n for _, _, ns in stmts for n in ns}))
    return text, clear_all, names, [src for src, _, _ in stmts], seps


@settings(max_examples=examples(150), deadline=None)
@given(scripts())
def test_scripts_of_the_two_calls_parse_to_their_union_R16(script):
    text, clear_all, names, _, _ = script
    parsed = parse_close_script(text)
    assert (parsed.clear_all, parsed.profiles) == (clear_all, names)
    # and as settings they are accepted (R19)
    s = parse_settings({"app_id": "a", "close_script": text}, "a", CoreConfig())
    assert s.close_script == parsed


GARBAGE = ["eval('x')", "alert(1)", "+ 1", "koreUtil.ClearAuthProfiles", "koreUtil.Other()",
           "ClearAllAuthProfiles()", "koreUtil.ClearAuthProfiles('A')", "x", "()", "[]", "'A'",
           "koreUtil.ClearAllAuthProfiles('A')", "koreUtil.ClearAuthProfiles(A)", "//", "{}"]


@settings(max_examples=examples(150), deadline=None)
@given(scripts(), st.sampled_from(GARBAGE), st.data())
def test_anything_else_in_a_script_is_rejected_R16_R19(script, garbage, data):
    _, _, _, srcs, seps = script
    where = data.draw(st.integers(0, len(srcs)), label="statement position")
    glue = data.draw(st.sampled_from(["standalone", "appended"]), label="glue")
    parts = [src + sep for src, sep in zip(srcs, seps)]
    if glue == "standalone":
        parts.insert(where, garbage + ";")
    else:                                     # glued onto a statement, no separator
        i = min(where, len(parts) - 1)
        parts[i] = srcs[i] + " " + garbage + seps[i]
    text = "".join(parts)
    with pytest.raises(ScriptError):
        parse_close_script(text)
    with pytest.raises(SettingsError):
        parse_settings({"app_id": "a", "close_script": text}, "a", CoreConfig())
