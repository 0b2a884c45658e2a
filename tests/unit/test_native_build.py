"""The optional mypyc build (``make native``, worker/native.py) never changes what runs.

The ``.py`` sources stay the source of truth: the purity test reads them, and compiled
modules must have been built from exactly those sources — a stale ``.so`` would shadow
an edited source file, so it fails here (fix: ``make native`` or ``make clean-native``).
The suite passes with and without the compiled modules."""
from __future__ import annotations

import importlib

from tests.unit.test_domain_purity import domain_files
from worker import native


def test_compiled_modules_if_any_are_built_from_the_current_sources():
    st = native.status()
    assert st["stale"] == [], (
        f"compiled modules older than their source: {st['stale']} — run `make native` "
        "(rebuild) or `make clean-native` (pure Python)")
    assert st["compiled_modules"] in (0, st["modules"]), f"partial native build: {st}"


def test_every_compiled_domain_module_is_a_purity_checked_source():
    checked = {str(p.relative_to(native.ROOT)) for p in domain_files()}
    compiled_domain = {s for s in native.SOURCES if s.startswith("worker/domain/")}
    assert compiled_domain and compiled_domain <= checked


def test_imported_modules_match_the_reported_status():
    st = native.status()
    for source in native.SOURCES:
        module = importlib.import_module(native._module(source))
        assert module.__file__.endswith(".py") != st["compiled"], (source, module.__file__)
