"""Deployment artefacts (deploy/Dockerfile, docker-compose, k8s, Prometheus, Grafana) agree
with the code they deploy.

No Docker engine or cluster is needed: every file is parsed (YAML, JSON, Dockerfile syntax)
and compared with what the worker actually reads and exposes:

- env var names: scanned from the source of the ``worker`` modules that ``python -m
  worker`` can import (``os.environ`` / ``getenv`` accesses and the helpers built on them,
  e.g. ``_int("NAME", 1)``, ``_secret("NAME")`` -> NAME and NAME_FILE). A name read only
  by a module nothing imports does not count: the running worker would ignore it;
- HTTP routes: the probe and scrape paths must be string literals of that same code;
- the README "Configuration" table (names and defaults);
- metric names and labels: ``worker.metrics.REGISTRY``.
"""
from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path, PurePosixPath

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "conversation-sessions.json"

WEB_PORT_DEFAULT = 6066
APP_UID = 10001
# ConfigMap values that deliberately differ from the README defaults (each is commented in
# configmap.yaml): the cluster's brokers, replicated changelogs, the mounted state volume,
# exactly-once processing for billing.
CONFIGMAP_OVERRIDES = {"KAFKA_BOOTSTRAP_SERVERS", "TOPIC_REPLICATION_FACTOR", "STATE_DIR",
                       "PROCESSING_GUARANTEE"}
# Dockerfile ENV names that configure Python/pip, not the worker.
RUNTIME_ENV = re.compile(r"^(PATH|LANG|LC_\w+|PYTHON\w*|PIP_\w*|VIRTUAL_ENV)$")
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]+$")


# --------------------------------------------------------------------------- env vars read by the code

def _environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ")


def _env_keys(tree: ast.AST):
    """Yield (key expression, default expression or None) of every environment read."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            f = node.func
            default = node.args[1] if len(node.args) > 1 else None
            if isinstance(f, ast.Attribute) and f.attr in ("get", "pop", "setdefault") and _environ(f.value):
                yield node.args[0], default
            elif (isinstance(f, ast.Attribute) and f.attr == "getenv") or (
                    isinstance(f, ast.Name) and f.id == "getenv"):
                yield node.args[0], default
        elif isinstance(node, ast.Subscript) and _environ(node.value):
            yield node.slice, None
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops) \
                and any(_environ(c) for c in node.comparators):
            yield node.left, None


def _template(key: ast.AST, params: list[str]) -> tuple[int, str, str] | None:
    """A key built from a parameter: ``name`` -> (i, "", ""), ``f"{name}_FILE"`` -> (i, "", "_FILE")."""
    if isinstance(key, ast.Name) and key.id in params:
        return params.index(key.id), "", ""
    if isinstance(key, ast.JoinedStr):
        parts = key.values
        idx = [i for i, p in enumerate(parts)
               if isinstance(p, ast.FormattedValue) and isinstance(p.value, ast.Name) and p.value.id in params]
        if len(idx) == 1 and all(isinstance(p, ast.Constant) for i, p in enumerate(parts) if i != idx[0]):
            prefix = "".join(p.value for p in parts[:idx[0]])
            suffix = "".join(p.value for p in parts[idx[0] + 1:])
            return params.index(parts[idx[0]].value.id), prefix, suffix
    return None


def _call_name(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def scan_env_reads(sources: dict[str, str]) -> dict[str, set]:
    """Env var names read by the given sources -> the literal defaults given for them.

    Direct reads (``os.environ.get("X", d)``, ``os.getenv``, ``os.environ["X"]``,
    ``"X" in os.environ``) and calls of *env helpers*: functions whose parameter ends up as
    (part of) an environment key, like ``_int(name, default)`` or ``_secret(name)`` reading
    ``f"{name}_FILE"``; helpers of helpers are found too.
    """
    trees = {path: ast.parse(text, filename=path) for path, text in sources.items()}
    helpers: dict[str, set[tuple[int, str, str]]] = {}
    changed = True
    while changed:                      # fixpoint: helpers that call helpers
        changed = False
        for tree in trees.values():
            for fn in ast.walk(tree):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
                found = {t for key, _ in _env_keys(fn) if (t := _template(key, params))}
                for call in ast.walk(fn):
                    if isinstance(call, ast.Call) and _call_name(call) in helpers:
                        for i, pre, suf in helpers[_call_name(call)]:
                            if i < len(call.args) and (t := _template(call.args[i], params)):
                                found.add((t[0], t[1] + pre, suf + t[2]))
                if found - helpers.get(fn.name, set()):
                    helpers.setdefault(fn.name, set()).update(found)
                    changed = True
    reads: dict[str, set] = {}

    def add(name, default):
        if isinstance(name, str) and ENV_NAME.match(name):
            d = reads.setdefault(name, set())
            if isinstance(default, ast.Constant) and default.value is not None:
                d.add(default.value)

    for tree in trees.values():
        for key, default in _env_keys(tree):
            if isinstance(key, ast.Constant):
                add(key.value, default)
        for call in ast.walk(tree):
            if isinstance(call, ast.Call) and _call_name(call) in helpers:
                for i, pre, suf in helpers[_call_name(call)]:
                    if i < len(call.args) and isinstance(call.args[i], ast.Constant) \
                            and isinstance(call.args[i].value, str):
                        default = call.args[i + 1] if i + 1 < len(call.args) and not (pre or suf) else None
                        add(pre + call.args[i].value + suf, default)
    return reads


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=None)
def worker_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / "worker").rglob("*.py"))}


def imported_modules(module: str, tree: ast.AST, known) -> set[str]:
    """Modules of the ``worker`` package imported anywhere in ``tree`` (also inside
    functions, e.g. ``python -m worker run`` importing ``.app`` lazily)."""
    package = module if worker_modules()[module].name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bases = [a.name for a in node.names]
            names = []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            bases, names = [base], [a.name for a in node.names]
        else:
            continue
        for base in bases:
            candidates = [base] + [f"{base}.{n}" for n in names]
            for cand in candidates:
                parts = cand.split(".")
                out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1)
                           if ".".join(parts[:i]) in known)
    return out


@lru_cache(maxsize=None)
def reachable_modules() -> frozenset[str]:
    """Modules of the worker package that ``python -m worker`` can import."""
    known = worker_modules()
    seen, todo = set(), ["worker.__main__"]
    while todo:
        mod = todo.pop()
        if mod in seen or mod not in known:
            continue
        seen.add(mod)
        tree = ast.parse(known[mod].read_text(encoding="utf-8"))
        todo.extend(imported_modules(mod, tree, known) - seen)
    return frozenset(seen)


@lru_cache(maxsize=None)
def code_env() -> dict[str, set]:
    """Env vars read by the code ``python -m worker`` runs (modules it can import)."""
    sources = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8")
               for m, p in worker_modules().items() if m in reachable_modules()}
    return scan_env_reads(sources)


@lru_cache(maxsize=None)
def dormant_env() -> dict[str, list[str]]:
    """Env vars read only by worker modules nothing imports (yet) -> those modules."""
    out: dict[str, list[str]] = {}
    for m, p in worker_modules().items():
        if m not in reachable_modules():
            for name in scan_env_reads({m: p.read_text(encoding="utf-8")}):
                if name not in code_env():
                    out.setdefault(name, []).append(m)
    return out


def _not_read(names) -> list[str]:
    """Names the running worker does not read; those read only by an unimported module
    are marked ``NAME (only in worker.x, which python -m worker never imports)``."""
    missing = sorted(set(names) - set(code_env()))
    return [f"{n} (only in {', '.join(dormant_env()[n])}, which python -m worker never imports)"
            if n in dormant_env() else n for n in missing]


# --------------------------------------------------------------------------- README configuration table

@lru_cache(maxsize=None)
def readme_config() -> dict[str, str | None]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    table: dict[str, str | None] = {}
    for line in section.splitlines():
        if not line.startswith("|") or set(line) <= set("|- "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0])
        defaults = re.findall(r"`([^`]*)`", cells[1]) if len(cells) > 1 else []
        for i, name in enumerate(names):
            table[name] = defaults[i] if len(defaults) == len(names) else None
    return table


# --------------------------------------------------------------------------- files

def _yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


@lru_cache(maxsize=None)
def k8s_objects() -> dict[tuple[str, str], dict]:
    objs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in _yaml_docs(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objs, f"{key} defined twice"
            objs[key] = doc | {"_file": path.name}
    return objs


def k8s(kind: str, name: str | None = None) -> dict:
    found = [o for (k, n), o in k8s_objects().items() if k == kind and (name is None or n == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/k8s, found {len(found)}"
    return found[0]


def deployment() -> dict:
    return k8s("Deployment")


def worker_container() -> dict:
    containers = deployment()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def configmap_data() -> dict[str, str]:
    name = next(e["configMapRef"]["name"] for e in worker_container()["envFrom"] if "configMapRef" in e)
    return k8s("ConfigMap", name)["data"]


def secret_example() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in _yaml_docs(K8S / "secret-example.yaml")}


def env_secret_name() -> str:
    refs = [e["secretRef"]["name"] for e in worker_container()["envFrom"] if "secretRef" in e]
    assert len(refs) == 1, "the worker loads exactly one Secret as env (security settings)"
    return refs[0]


def files_secret_volume() -> tuple[dict, dict]:
    """(volume, volumeMount) of the Secret mounted as files."""
    pod = deployment()["spec"]["template"]["spec"]
    vols = [v for v in pod["volumes"] if "secret" in v]
    assert len(vols) == 1
    mount = next(m for m in worker_container()["volumeMounts"] if m["name"] == vols[0]["name"])
    return vols[0], mount


def resolve_port(port) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in worker_container()["ports"]}
    assert port in named, f"probe/service port {port!r} is not a named container port"
    return named[port]


@lru_cache(maxsize=None)
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def compose_workers() -> dict[str, dict]:
    return {name: svc for name, svc in compose()["services"].items()
            if isinstance(svc.get("build"), dict) and svc["build"].get("dockerfile") == "deploy/Dockerfile"}


def compose_env(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: None if v is None else str(v) for k, v in env.items()}


# --------------------------------------------------------------------------- Dockerfile

@lru_cache(maxsize=None)
def dockerfile() -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    """(global ARG defaults, stages as lists of (INSTRUCTION, arguments))."""
    lines, buf = [], ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buf):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        lines.append(buf + stripped)
        buf = ""
    global_args, stages = {}, []
    for line in lines:
        instr, _, rest = line.partition(" ")
        instr, rest = instr.upper(), rest.strip()
        if instr == "FROM":
            stages.append([])
        if not stages:
            if instr == "ARG":
                key, _, value = rest.partition("=")
                global_args[key] = value
            continue
        stages[-1].append((instr, rest))
    return global_args, stages


def _substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


def final_stage() -> list[tuple[str, str]]:
    return dockerfile()[1][-1]


def instructions(stage, name: str) -> list[str]:
    return [rest for instr, rest in stage if instr == name]


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), rest
    return value


def dockerfile_env() -> dict[str, str]:
    env = {}
    for rest in instructions(final_stage(), "ENV"):
        for item in shlex.split(rest):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def dockerignored(path: str) -> bool:
    """Docker's .dockerignore semantics: patterns relative to the context root, ``**``
    across directories, ``!`` re-includes, the last matching pattern wins, and a path is
    excluded when it or one of its parent directories matches."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pat = line[1:] if negate else line
        pat = str(PurePosixPath(pat.strip("/")))
        rx = re.escape(pat).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*") \
            .replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        patterns.append((negate, re.compile(rx + r"\Z")))
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for negate, rx in patterns:
        if any(rx.match(p) for p in prefixes):
            excluded = not negate
    return excluded


# --------------------------------------------------------------------------- metrics and PromQL

@lru_cache(maxsize=None)
def exposed_metrics() -> dict[str, set[str] | None]:
    """Every sample name the worker's REGISTRY can expose -> its label names."""
    import worker.metrics as metrics
    from prometheus_client.metrics import MetricWrapperBase

    labels: dict[str, set[str]] = {}
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            labels[obj._name] = set(getattr(obj, "_labelnames", ()))
    exposed: dict[str, set[str] | None] = {}
    for family in metrics.REGISTRY.collect():
        lab = labels.get(family.name)
        if family.type == "counter":
            exposed[family.name + "_total"] = lab
        elif family.type == "histogram":
            exposed[family.name + "_bucket"] = None if lab is None else lab | {"le"}
            exposed[family.name + "_sum"] = lab
            exposed[family.name + "_count"] = lab
        elif family.type == "summary":
            exposed[family.name] = None if lab is None else lab | {"quantile"}
            exposed[family.name + "_sum"] = lab
            exposed[family.name + "_count"] = lab
        else:
            exposed[family.name] = lab
    return exposed


PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                   "bool", "and", "or", "unless", "inf", "nan", "atan2"}
# labels added by the scrape (compose static config, k8s service discovery / relabelling)
TARGET_LABELS = {"instance", "job", "deployment", "pod", "namespace", "service", "container"}


def parse_promql(expr: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """(metric selectors as (name, matcher label names), grouping label names) of a query.

    Enough PromQL for dashboards: strings, Grafana variables and range/subquery brackets
    are dropped; identifiers followed by ``(`` are functions or aggregations; labels in
    ``by/without/on/ignoring/group_*(...)`` are grouping labels.
    """
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\$\{[^}]*\}|\$\w+", "", s)
    grouping: set[str] = set()

    def take(m):
        grouping.update(x.strip() for x in m.group(2).split(",") if x.strip())
        return " "
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", take, s)
    s = re.sub(r"\[[^\]]*\]", "", s)
    s = re.sub(r"\boffset\s+-?\w+|@\s*[\w.()]+", " ", s)
    selectors = []
    token = re.compile(r"(?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)"
                       r"|(?P<id>[A-Za-z_:][A-Za-z0-9_:]*)\s*(?P<match>\{[^}]*\})?\s*(?P<call>\()?")
    for m in token.finditer(s):
        name = m.group("id")
        if not name or m.group("call") or name in PROMQL_KEYWORDS:
            continue
        matchers = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", m.group("match") or ""))
        selectors.append((name, matchers))
    return selectors, grouping


@lru_cache(maxsize=None)
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_panels() -> list[dict]:
    out = []
    for panel in dashboard()["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))      # collapsed rows keep their panels inside
    return out


def dashboard_exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard_panels() for t in p.get("targets", []) if "expr" in t]


# =========================================================================== tests: the scanners themselves

def test_env_scanner_finds_direct_reads_helpers_and_file_variants():
    src = '''
import os
def _int(name, default):
    raw = os.environ.get(name)
    return default if raw is None else int(raw)
def _secret(name):
    path = os.environ.get(f"{name}_FILE")
    return open(path).read() if path else os.environ.get(name)
def _port(name):
    return _int(name + "", 1) if False else _int(name, 7)
X = _int("LIMIT_A", 256)
Y = os.getenv("LOG_LEVEL", "INFO")
Z = os.environ["STORE"]
W = "FLAG_B" in os.environ
P = _secret("KAFKA_SASL_PASSWORD")
Q = _port("WEB_PORT")
not_env = {"NOT_AN_ENV": 1}
'''
    reads = scan_env_reads({"x.py": src})
    assert set(reads) == {"LIMIT_A", "LOG_LEVEL", "STORE", "FLAG_B", "KAFKA_SASL_PASSWORD",
                          "KAFKA_SASL_PASSWORD_FILE", "WEB_PORT"}
    assert reads["LIMIT_A"] == {256} and reads["LOG_LEVEL"] == {"INFO"}


def test_promql_parser_separates_metrics_from_functions_labels_and_durations():
    sels, grouping = parse_promql(
        'histogram_quantile(0.99, sum by (le, instance) (rate(a_bucket{instance=~"$instance", x!="y"}'
        '[$__rate_interval]))) / on (job) b_total offset 5m and c')
    assert [n for n, _ in sels] == ["a_bucket", "b_total", "c"]
    assert sels[0][1] == {"instance", "x"}
    assert grouping == {"le", "instance", "job"}


def test_dockerignore_matcher_follows_docker_semantics():
    assert not dockerignored("worker/app.py")
    assert dockerignored(".venv/bin/python")
    assert dockerignored("worker/domain/__pycache__/x.cpython-311.pyc")


def test_entrypoint_import_graph_follows_lazy_and_relative_imports():
    mods = reachable_modules()
    # __main__ imports .app inside a function; app imports .settings_env, which imports .config
    assert {"worker.__main__", "worker.app", "worker.settings_env", "worker.config"} <= mods


def test_readme_configuration_table_is_parsed():
    table = readme_config()
    assert len(table) >= 30, "README configuration table not found or not parsed"
    assert table["WEB_PORT"] == str(WEB_PORT_DEFAULT)
    assert table["LIMIT_HISTORIC_TAGS"] == "16" and table["TOPIC_UPGRADED"] == "session-upgraded"


# =========================================================================== env vars: artefacts vs code vs README

def test_configmap_sets_every_variable_of_the_readme_configuration_table():
    missing = sorted(set(readme_config()) - set(configmap_data()))
    assert not missing, f"README variables missing from k8s ConfigMap: {missing}"


def test_configmap_keeps_readme_defaults_except_commented_deployment_overrides():
    data, readme = configmap_data(), readme_config()
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    differing = {k: (data[k], readme[k]) for k in readme
                 if k in data and readme[k] is not None and data[k].lower() != readme[k].lower()}
    assert set(differing) <= CONFIGMAP_OVERRIDES, f"ConfigMap differs from README defaults: {differing}"
    text = (K8S / "configmap.yaml").read_text(encoding="utf-8")
    for name in differing:
        above = text.split(f"\n  {name}:", 1)[0].splitlines()
        comments = []
        while above and above[-1].strip().startswith("#"):
            comments.append(above.pop().strip())
        assert any(c.startswith("# deployment:") for c in comments), \
            f"override of {name} needs a '# deployment:' comment"


def test_configmap_values_match_literal_defaults_in_the_code():
    data = configmap_data()
    wrong = {name: (data[name], sorted(map(str, defaults)))
             for name, defaults in code_env().items()
             if name in data and name not in CONFIGMAP_OVERRIDES and defaults
             and data[name].lower() not in {str(d).lower() for d in defaults}}
    assert not wrong, f"ConfigMap value vs code default: {wrong}"


def test_every_configmap_variable_is_read_by_the_worker_code():
    assert not _not_read(configmap_data()), f"ConfigMap sets variables the worker never reads: {_not_read(configmap_data())}"


def test_every_deployment_env_variable_is_read_by_the_worker_code():
    names = [e["name"] for e in worker_container().get("env", [])]
    assert not _not_read(names), f"Deployment env the worker never reads: {_not_read(names)}"


def test_every_security_secret_variable_is_read_by_the_worker_code():
    names = secret_example()[env_secret_name()]["stringData"]
    assert not _not_read(names), f"Secret env the worker never reads: {_not_read(names)}"


def test_every_compose_worker_variable_is_read_by_the_worker_code():
    for name, svc in compose_workers().items():
        unread = _not_read(compose_env(svc))
        assert not unread, f"compose service {name} sets variables the worker never reads: {unread}"


def test_every_dockerfile_env_of_the_worker_is_read_by_the_worker_code():
    names = [n for n in dockerfile_env() if not RUNTIME_ENV.match(n)]
    assert names, "the image should set STATE_DIR"
    assert not _not_read(names), f"Dockerfile ENV the worker never reads: {_not_read(names)}"


def test_deployment_loads_the_configmap_and_an_optional_security_secret():
    env_from = worker_container()["envFrom"]
    cm_refs = [e["configMapRef"]["name"] for e in env_from if "configMapRef" in e]
    assert len(cm_refs) == 1 and ("ConfigMap", cm_refs[0]) in k8s_objects()
    secret_ref = next(e["secretRef"] for e in env_from if "secretRef" in e)
    assert secret_ref.get("optional") is True, "PLAINTEXT clusters run without the security Secret"
    assert secret_ref["name"] in secret_example()


# =========================================================================== ports, probes, paths

def test_web_port_default_is_the_same_in_code_readme_and_configmap():
    assert code_env()["WEB_PORT"] == {WEB_PORT_DEFAULT}
    assert readme_config()["WEB_PORT"] == str(WEB_PORT_DEFAULT)
    assert configmap_data()["WEB_PORT"] == str(WEB_PORT_DEFAULT)


def _served_strings() -> set[str]:
    out = set()
    for m, p in worker_modules().items():
        if m in reachable_modules():
            for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    out.add(node.value)
    return out


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probe_and_scrape_paths_are_routes_of_the_running_worker(path):
    # k8s probes, the image HEALTHCHECK and Prometheus call these; a route the code does
    # not declare would make every pod fail its probes
    routes = {s.rstrip("/") for s in _served_strings() if s.startswith("/")}
    assert path in routes, f"no {path!r} route in the code python -m worker runs"


def test_metrics_the_dashboard_shows_are_registered_by_the_running_worker():
    assert "worker.metrics" in reachable_modules(), \
        "worker.metrics is never imported by python -m worker: /metrics would not show its REGISTRY"


def test_container_port_named_http_is_the_web_port():
    ports = worker_container()["ports"]
    assert [(p["name"], p["containerPort"]) for p in ports] == [("http", WEB_PORT_DEFAULT)]


def test_liveness_and_startup_probes_hit_healthz_and_readiness_hits_readyz_on_the_web_port():
    c = worker_container()
    expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        get = c[probe]["httpGet"]
        assert get["path"] == path, probe
        assert resolve_port(get["port"]) == WEB_PORT_DEFAULT, probe
    # recovery may take long: only the startup probe budget bounds it, not liveness
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


def test_pod_is_annotated_for_prometheus_scraping_of_metrics_on_the_web_port():
    ann = deployment()["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/path"] == "/metrics"
    assert int(ann["prometheus.io/port"]) == WEB_PORT_DEFAULT


def test_metrics_service_is_clusterip_on_http_metrics_port_and_keeps_recovering_pods():
    svc = k8s("Service")
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    [port] = svc["spec"]["ports"]
    assert port["name"] == "http-metrics" and port["port"] == WEB_PORT_DEFAULT
    assert resolve_port(port["targetPort"]) == WEB_PORT_DEFAULT
    assert svc["spec"].get("publishNotReadyAddresses") is True


def test_pdb_and_metrics_service_select_exactly_the_deployment_pods():
    dep = deployment()
    selector = dep["spec"]["selector"]["matchLabels"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    pdb = k8s("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"] == {"matchLabels": selector}
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    assert k8s("Service")["spec"]["selector"] == selector


def test_prometheus_scrapes_metrics_path_of_both_compose_workers():
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "conversation-sessions"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    workers = compose_workers()
    expected = {f"{name}:{compose_env(svc).get('WEB_PORT') or WEB_PORT_DEFAULT}" for name, svc in workers.items()}
    assert len(workers) == 2 and targets == expected


# =========================================================================== k8s: pod spec

def test_deployment_runs_the_image_entrypoint_with_the_run_command():
    c = worker_container()
    assert "command" not in c, "keep the image ENTRYPOINT (python -m worker)"
    entrypoint = exec_form(instructions(final_stage(), "ENTRYPOINT")[-1])
    assert entrypoint + c.get("args", exec_form(instructions(final_stage(), "CMD")[-1])) == \
        ["python", "-m", "worker", "run"]


def test_pod_runs_non_root_with_read_only_root_filesystem_and_no_capabilities():
    pod = deployment()["spec"]["template"]["spec"]
    c = worker_container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == APP_UID and pod["securityContext"]["runAsGroup"] == APP_UID
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod.get("automountServiceAccountToken") is False


def test_pod_stops_gracefully_within_sixty_seconds():
    assert deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60
    assert "preStop" not in worker_container().get("lifecycle", {}), "SIGTERM goes straight to faust"


def test_container_has_cpu_and_memory_requests_and_limits():
    res = worker_container()["resources"]
    assert res["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert res["limits"] == {"cpu": "1", "memory": "2Gi"}


def test_state_dir_is_the_same_writable_volume_in_image_configmap_pod_and_compose():
    state_dir = configmap_data()["STATE_DIR"]
    assert state_dir == "/var/lib/sessions" == dockerfile_env()["STATE_DIR"]
    mounts = {m["mountPath"]: m["name"] for m in worker_container()["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment()["spec"]["template"]["spec"]["volumes"]}
    assert state_dir in mounts and "emptyDir" in volumes[mounts[state_dir]]
    assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]], "read-only root needs a writable /tmp"
    for name, svc in compose_workers().items():
        assert compose_env(svc)["STATE_DIR"] == state_dir, name


def test_store_is_memory_so_a_deployment_without_persistent_volumes_is_right():
    # the comment at the top of deployment.yaml explains the choice; rocksdb:// would need
    # a StatefulSet with a volumeClaimTemplate
    assert configmap_data()["STORE"] == "memory://"
    assert deployment()["kind"] == "Deployment"
    assert "StatefulSet" in (K8S / "deployment.yaml").read_text(encoding="utf-8")


def test_replicas_do_not_exceed_partitions():
    assert 1 <= deployment()["spec"]["replicas"] <= int(configmap_data()["TOPIC_PARTITIONS"])


def test_security_example_uses_sasl_ssl_scram_with_files_mounted_from_a_secret():
    secrets = secret_example()
    env = secrets[env_secret_name()]["stringData"]
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert {"KAFKA_SASL_USERNAME", "KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"} <= set(env)
    assert {"KAFKA_SASL_PASSWORD", "KAFKA_SASL_PASSWORD_FILE"} & set(env)
    volume, mount = files_secret_volume()
    assert volume["secret"].get("optional") is True and mount.get("readOnly") is True
    files = secrets[volume["secret"]["secretName"]]["stringData"]
    for name in ("KAFKA_SASL_PASSWORD_FILE", "KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"):
        if name in env:
            path = PurePosixPath(env[name])
            assert str(path.parent) == mount["mountPath"], f"{name} points outside the Secret mount"
            assert path.name in files, f"{name} names a file the Secret does not hold"
    # group-readable only: the pod's fsGroup owns the files, the non-root user can read them
    assert volume["secret"]["defaultMode"] & 0o007 == 0


def test_security_example_holds_placeholders_only():
    for secret in secret_example().values():
        assert secret["kind"] == "Secret" and "data" not in secret, "use readable stringData placeholders"
        data = secret["stringData"]
        for key in ("KAFKA_SASL_USERNAME", "LOG_ID_SALT", "sasl-password", "ca.crt", "tls.crt", "tls.key"):
            if key in data:
                assert "REPLACE_ME" in data[key], f"{key} must be a placeholder"
        assert not re.search(r"MII[A-Za-z0-9+/]{20}", json.dumps(data)), "looks like real key material"


def test_kustomization_lists_every_manifest_except_the_secret_example():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kust["kind"] == "Kustomization"
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == manifests - {"secret-example.yaml"}
    assert len(kust["resources"]) == len(set(kust["resources"]))
    image = worker_container()["image"].split(":")[0]
    assert image in {i["name"] for i in kust.get("images", [])}


def test_every_k8s_object_carries_the_app_label():
    for (kind, name), obj in k8s_objects().items():
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "conversation-sessions", (kind, name)


# =========================================================================== Dockerfile

def test_dockerfile_pins_every_stage_to_a_python_311_slim_bookworm_patch_release():
    global_args, stages = dockerfile()
    assert len(stages) >= 2, "multi-stage build"
    for stage in stages:
        image = _substitute(stage[0][1].split()[0], global_args)
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert "3.11" in requires


def test_dockerfile_installs_the_project_with_rocksdb_constrained_by_the_lock_file():
    build = "\n".join(instructions(dockerfile()[1][0], "RUN"))
    assert re.search(r"pip install --no-cache-dir -c requirements\.lock \"?\.\[rocksdb\]\"?", build)
    copies = " ".join(instructions(dockerfile()[1][0], "COPY"))
    assert "requirements.lock" in copies and "pyproject.toml" in copies
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "rocksdb" in extras
    locked = {line.split("==")[0].lower().replace("_", "-")
              for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line}
    assert {d.split("==")[0].lower() for d in extras["rocksdb"]} <= locked


def test_dockerfile_runtime_runs_as_a_fixed_non_root_uid():
    stage = final_stage()
    user = instructions(stage, "USER")[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) == APP_UID, "USER must be the numeric UID (runAsNonRoot can check it)"
    runs = "\n".join(instructions(stage, "RUN"))
    assert re.search(rf"useradd .*--uid {APP_UID}\b", runs)
    # nothing after USER switches back to root
    after = stage[[i for i, (instr, _) in enumerate(stage) if instr == "USER"][-1]:]
    assert not [rest for instr, rest in after if instr == "RUN"]


def test_dockerfile_workdir_state_dir_and_exposed_port():
    stage = final_stage()
    assert instructions(stage, "WORKDIR")[-1] == "/app"
    assert dockerfile_env()["STATE_DIR"] == "/var/lib/sessions"
    assert "/var/lib/sessions" in "\n".join(instructions(stage, "RUN")), "STATE_DIR must exist and be owned by the app user"
    assert instructions(stage, "EXPOSE") == [str(WEB_PORT_DEFAULT)]


def test_dockerfile_entrypoint_and_cmd_start_python_m_worker_run():
    stage = final_stage()
    assert exec_form(instructions(stage, "ENTRYPOINT")[-1]) == ["python", "-m", "worker"]
    assert exec_form(instructions(stage, "CMD")[-1]) == ["run"]
    main = (ROOT / "worker" / "__main__.py").read_text()
    assert '"run"' in main, "python -m worker must know the run command"


def _healthcheck_cmd() -> list[str]:
    [hc] = instructions(final_stage(), "HEALTHCHECK")
    opts, _, cmd = hc.partition("CMD ")
    assert "--interval" in opts and "--timeout" in opts
    return exec_form(cmd)


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status, healthy", [(200, True), (503, False)])
def test_dockerfile_healthcheck_asks_healthz_with_python_on_web_port(status, healthy):
    cmd = _healthcheck_cmd()
    assert cmd[:2] == ["python", "-c"] and "/healthz" in cmd[2]
    handler = type("H", (_Health,), {"status": status})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {"WEB_PORT": str(server.server_address[1]), "PATH": "/usr/bin:/bin"}
        proc = subprocess.run([sys.executable, *cmd[1:]], env=env, capture_output=True, timeout=20)
    finally:
        server.shutdown()
        server.server_close()
    assert (proc.returncode == 0) is healthy, proc.stderr.decode()


def test_build_context_keeps_what_the_dockerfile_copies_and_drops_local_clutter():
    for stage in dockerfile()[1]:
        for rest in instructions(stage, "COPY"):
            if rest.startswith("--from"):
                continue
            *sources, _dest = rest.split()
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: no such file in the build context"
                assert not dockerignored(src), f"COPY {src} is excluded by .dockerignore"
    for junk in (".venv/bin/python", ".git/HEAD", ".pytest_cache/v/x", ".hypothesis/x",
                 "var/state/x", "bench/results/run.json", "worker/__pycache__/a.pyc"):
        assert dockerignored(junk), f"{junk} should not be sent to the Docker daemon"
    assert not dockerignored("worker/domain/rules.py")


# =========================================================================== docker-compose

def test_compose_runs_two_workers_in_one_consumer_group_on_distinct_host_ports():
    workers = compose_workers()
    assert len(workers) == 2
    app_ids = {compose_env(svc)["WORKER_APP_ID"] for svc in workers.values()}
    assert len(app_ids) == 1
    host_ports = []
    for name, svc in workers.items():
        [mapping] = svc["ports"]
        host, container = str(mapping).rsplit(":", 1)
        assert int(container) == WEB_PORT_DEFAULT == int(compose_env(svc).get("WEB_PORT") or WEB_PORT_DEFAULT)
        host_ports.append(host)
    assert len(set(host_ports)) == 2


def test_compose_workers_are_built_from_deploy_dockerfile_at_repo_root():
    for name, svc in compose_workers().items():
        context = (COMPOSE.parent / svc["build"]["context"]).resolve()
        assert context == ROOT, name
        assert (context / svc["build"]["dockerfile"]).is_file()
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert svc.get("stop_grace_period") == "60s"


def test_compose_worker_healthcheck_asks_healthz_with_python():
    for name, svc in compose_workers().items():
        test = svc["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], name
        assert f"127.0.0.1:{WEB_PORT_DEFAULT}/healthz" in test[3]
        compile(test[3], f"{name}-healthcheck", "exec")


def test_compose_kafka_is_one_kraft_node_reachable_as_the_workers_bootstrap():
    kafka = compose()["services"]["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    env = compose_env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"]
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "KAFKA_DEFAULT_REPLICATION_FACTOR",
                "KAFKA_MIN_INSYNC_REPLICAS"):
        assert env[key] == "1", key
    advertised = env["KAFKA_ADVERTISED_LISTENERS"]
    for name, svc in compose_workers().items():
        bootstrap = compose_env(svc)["KAFKA_BOOTSTRAP_SERVERS"]
        assert f"PLAINTEXT://{bootstrap}" in advertised.split(","), name
        assert int(compose_env(svc)["TOPIC_REPLICATION_FACTOR"]) == 1


def test_compose_images_are_pinned():
    for name, svc in compose()["services"].items():
        if "image" in svc and "build" not in svc:
            tag = svc["image"].rsplit(":", 1)[-1]
            assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {svc['image']} is not pinned"
    assert re.fullmatch(r"prom/prometheus:v3\.\d+\.\d+", compose()["services"]["prometheus"]["image"])


def test_compose_mounts_the_prometheus_config_and_grafana_provisioning_that_exist():
    services = compose()["services"]
    mounts = [v.split(":")[0] for s in ("prometheus", "grafana") for v in services[s]["volumes"]]
    for src in mounts:
        assert (COMPOSE.parent / src).exists(), src
    assert "./prometheus/prometheus.yml" in mounts and "./grafana/conversation-sessions.json" in mounts


# =========================================================================== Grafana dashboard

def test_dashboard_queries_only_metrics_the_worker_registers():
    exposed = exposed_metrics()
    unknown = {(title, name) for title, expr in dashboard_exprs()
               for name, _ in parse_promql(expr)[0] if name not in exposed}
    assert not unknown, f"dashboard uses metrics not in worker/metrics.py REGISTRY: {sorted(unknown)}"
    for var in dashboard()["templating"]["list"]:
        query = var.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        for name in re.findall(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,", query):
            assert name in exposed, f"variable {var['name']}: {name}"


def test_dashboard_filters_and_groups_only_by_labels_the_metrics_have():
    exposed = exposed_metrics()
    for title, expr in dashboard_exprs():
        selectors, grouping = parse_promql(expr)
        known = set(TARGET_LABELS)
        for name, matchers in selectors:
            labels = exposed.get(name)
            if labels is None:
                continue
            assert matchers <= labels | TARGET_LABELS, f"{title}: {name}{matchers}"
            known |= labels
        assert grouping <= known, f"{title}: groups by {grouping - known}"


REQUIRED_SIGNALS = [
    # (what, regex over one PromQL expression)
    ("events/s by type", r"sum by \(type\) \(rate\(sessions_events_consumed_total"),
    ("dead letters/s by reason", r"sum by \(reason\) \(rate\(sessions_dead_letters_total"),
    ("sessions opened/s", r"rate\(sessions_opened_total"),
    ("sessions upgraded/s", r"rate\(sessions_upgraded_total"),
    ("sessions closed/s by reason", r"sum by \(reason\) \(rate\(sessions_closed_total"),
    ("open sessions per partition", r"by \(partition\) \(sessions_open\{"),
    ("watermark delay per partition", r"by \(partition\) \(sessions_watermark_delay_seconds"),
    ("close lateness p50", r"histogram_quantile\(0\.5, .*sessions_close_lateness_seconds_bucket"),
    ("close lateness p99", r"histogram_quantile\(0\.99, .*sessions_close_lateness_seconds_bucket"),
    ("batch duration p99", r"histogram_quantile\(0\.99, .*sessions_batch_duration_seconds_bucket"),
    ("consumer lag per partition", r"by \(partition\) \(sessions_consumer_lag_records"),
    ("state keys per partition", r"by \(partition\) \(sessions_state_keys"),
    ("readiness", r"sessions_ready"),
]


@pytest.mark.parametrize("what, pattern", REQUIRED_SIGNALS, ids=[w for w, _ in REQUIRED_SIGNALS])
def test_dashboard_shows_the_operational_signal(what, pattern):
    assert any(re.search(pattern, expr) for _, expr in dashboard_exprs()), what


def test_histogram_quantiles_aggregate_rates_of_buckets_by_le():
    for title, expr in dashboard_exprs():
        if "histogram_quantile" in expr:
            assert re.search(r"sum by \(le\b[^)]*\) \(rate\([a-z_]+_bucket\{", expr), title


def test_dashboard_is_grafana_json_with_uid_and_a_prometheus_datasource_variable():
    dash = dashboard()
    assert dash["uid"] and dash["title"]
    assert 36 <= dash["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard_panels()]
    assert len(ids) == len(set(ids))
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}" and target["expr"].strip(), panel["title"]


def test_dashboard_panels_do_not_overlap():
    taken = set()
    for panel in dashboard_panels():
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, panel["title"]
        taken |= cells
