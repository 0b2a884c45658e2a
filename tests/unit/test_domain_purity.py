"""The session core (worker/domain) is pure: no I/O, broker, metrics or clock (R22).

Walks every worker/domain/*.py with ``ast`` and fails on imports of the listed modules and on
calls that read a clock or a random source. The checker is itself tested on snippets, so the
purity test cannot pass vacuously."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[2] / "worker" / "domain"

FORBIDDEN_MODULES = {"faust", "aiokafka", "orjson", "prometheus_client", "time", "datetime",
                     "random", "os", "asyncio", "socket", "threading", "secrets", "subprocess",
                     "mode", "rocksdict", "msgspec"}
# attribute calls that read a clock or a random source, whatever the receiver is called
CLOCK_ATTRS = {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns",
               "process_time", "process_time_ns", "clock_gettime", "clock_gettime_ns", "now",
               "utcnow", "today", "uuid1", "uuid4", "getrandbits", "urandom", "random",
               "randint", "token_bytes", "token_hex"}
CLOCK_NAMES = CLOCK_ATTRS - {"random", "now", "today"} | {"localtime", "gmtime"}
DYNAMIC_IMPORTS = {"__import__", "import_module"}


def violations(source: str, filename: str = "<src>") -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{filename}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{filename}:{node.lineno}: from {node.module} import ...")
            for alias in node.names:
                if alias.name in CLOCK_NAMES:
                    found.append(f"{filename}:{node.lineno}: imports clock function {alias.name}")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in CLOCK_ATTRS:
                found.append(f"{filename}:{node.lineno}: call .{func.attr}()")
            elif isinstance(func, ast.Name) and func.id in CLOCK_NAMES:
                found.append(f"{filename}:{node.lineno}: call {func.id}()")
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in DYNAMIC_IMPORTS:
                found.append(f"{filename}:{node.lineno}: dynamic import {name}()")
    return found


def domain_files() -> list[Path]:
    return sorted(DOMAIN.glob("*.py"))


def test_domain_package_has_the_expected_modules_R22():
    names = {p.stem for p in domain_files()}
    assert {"partition", "rules", "closing", "settings", "close_script", "state", "ids",
            "deadlines", "events", "outputs", "config"} <= names


@pytest.mark.parametrize("path", domain_files(), ids=lambda p: p.name)
def test_domain_module_is_pure_no_io_no_clock_R22(path):
    assert violations(path.read_text(encoding="utf-8"), path.name) == []


@pytest.mark.parametrize("snippet", [
    "import time", "import os.path", "from datetime import datetime", "import orjson as j",
    "from faust import App", "import aiokafka", "from prometheus_client import Counter",
    "import random", "import asyncio", "import socket", "import threading",
    "x = time.time()", "x = t.monotonic_ns()", "x = datetime.now()", "x = dt.datetime.utcnow()",
    "from time import time", "x = perf_counter()", "u = uuid.uuid4()",
    "m = __import__('time')", "m = importlib.import_module('os')",
])
def test_purity_checker_catches_forbidden_code(snippet):
    assert violations(snippet) != []


@pytest.mark.parametrize("snippet", [
    "import hashlib", "import uuid\nu = uuid.uuid5(ns, 'x')", "from .config import CoreConfig",
    "import heapq", "x = st.activity + s.inactivity_ms", "from dataclasses import dataclass",
])
def test_purity_checker_accepts_pure_code(snippet):
    assert violations(snippet) == []
