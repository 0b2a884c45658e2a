"""Optional mypyc build of the core, the codec and the key partitioner (``make native``).

``python -m worker.native build`` compiles ``worker/domain/*.py``, ``worker/codec.py`` and
``worker/keyhash.py`` in place into extension modules (``.so`` files next to the sources, gitignored). The
``.py`` files stay the source of truth: Python imports an extension module before a
source file of the same name, so the build records a hash of every source it compiled
and ``status()`` reports compiled modules whose source changed since as stale
(``make native`` rebuilds them, ``make clean-native`` deletes them).

If mypyc is missing or compilation fails, the build prints a warning, removes what it
built and exits 0: the worker then runs the same code as pure Python. ``NATIVE=0``
skips the build. ``status`` prints which modules are compiled.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# worker/domain/__init__.py stays Python: it holds the shared library of the others.
SOURCES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "worker" / "domain").glob("*.py")
                 if p.name != "__init__.py") + ["worker/codec.py", "worker/keyhash.py"]
MYPY_ARGS = ["--explicit-package-bases"]   # worker/ is a namespace package
GROUP = "worker.domain._native"        # the shared library: worker/domain/_native__mypyc*.so
MANIFEST = ROOT / "worker" / "domain" / "_native.json"
BUILD_DIR = ROOT / "build" / "mypyc"
_EXT = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def _module(source: str) -> str:
    return source[:-3].replace("/", ".")


def _built_files() -> list[Path]:
    out = []
    for folder in (ROOT / "worker", ROOT / "worker" / "domain"):
        out += [p for p in folder.iterdir() if p.name.endswith(_EXT)]
    return sorted(out)


def _digest(source: str) -> str:
    return hashlib.sha256((ROOT / source).read_bytes()).hexdigest()


def status() -> dict:
    """Which of the compilable modules are extension modules, and which are stale."""
    try:
        recorded = json.loads(MANIFEST.read_text())["sources"]
    except (OSError, ValueError, KeyError):
        recorded = {}
    compiled, stale = [], []
    for source in SOURCES:
        stem = ROOT / source[:-3]
        if any(stem.with_name(stem.name + ext).exists() for ext in _EXT):
            compiled.append(_module(source))
            if recorded.get(source) != _digest(source):
                stale.append(_module(source))
    return {"compiled": len(compiled) == len(SOURCES) and not stale,
            "compiled_modules": len(compiled), "modules": len(SOURCES), "stale": stale}


def clean() -> None:
    for path in _built_files():
        path.unlink()
    MANIFEST.unlink(missing_ok=True)
    shutil.rmtree(BUILD_DIR, ignore_errors=True)


def _warn(message: str) -> None:
    bar = "=" * 78
    print(f"\n{bar}\nWARNING: {message}\n"
          "The worker runs pure Python (same behaviour, slower core). See `make native`.\n"
          f"{bar}\n", file=sys.stderr, flush=True)


def build(force: bool = False) -> int:
    if os.environ.get("NATIVE", "1") == "0":
        print("native: NATIVE=0, not compiling (pure Python)")
        return 0
    now = status()
    if now["compiled"] and not force:
        print(f"native: {now['modules']} modules compiled and up to date")
        return 0
    clean()
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        _warn("mypyc is not installed (pip install -e '.[native]'); nothing compiled.")
        return 0
    started = time.monotonic()
    script = (
        "import sys\n"
        "from setuptools import setup\n"
        "from mypyc.build import mypycify\n"
        f"setup(name='worker-native', script_args=['build_ext', '--inplace', '--build-temp', "
        f"{str(BUILD_DIR / 'temp')!r}, '--build-lib', {str(BUILD_DIR / 'lib')!r}],\n"
        f"      ext_modules=mypycify({MYPY_ARGS + SOURCES!r}, opt_level='3', group_name={GROUP!r},\n"
        f"                           target_dir={str(BUILD_DIR / 'c')!r},\n"
        "                           verbose=False, strip_asserts=False))\n")
    print(f"native: compiling {len(SOURCES)} modules with mypyc (about half a minute)…",
          flush=True)
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    log = BUILD_DIR / "build.log"
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, stdout=fh,
                              stderr=subprocess.STDOUT,
                              env={**os.environ, "MYPY_FORCE_COLOR": "0"})
    if proc.returncode == 0:
        check = subprocess.run(
            [sys.executable, "-c", "import worker.codec, worker.domain.rules as r; "
             "assert r.__file__.endswith(tuple(__import__('importlib.machinery').machinery"
             ".EXTENSION_SUFFIXES)), r.__file__"], cwd=ROOT, capture_output=True, text=True)
        if check.returncode != 0:
            proc = check
            with open(log, "a") as fh:
                fh.write(check.stdout + check.stderr)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        clean()
        _warn("mypyc compilation failed; compiled modules removed. Last lines of "
              f"{log.relative_to(ROOT)}:\n  " + "\n  ".join(tail))
        return 0
    MANIFEST.write_text(json.dumps(
        {"python": sys.version.split()[0], "sources": {s: _digest(s) for s in SOURCES}},
        indent=1) + "\n")
    print(f"native: compiled {len(SOURCES)} modules in {time.monotonic() - started:.0f}s "
          f"({', '.join(p.name for p in _built_files())[:70]}…)")
    return 0


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "status"
    if cmd == "build":
        return build(force="--force" in argv)
    if cmd == "clean":
        clean()
        print("native: compiled modules removed (pure Python)")
        return 0
    if cmd == "status":
        print(json.dumps(status()))
        return 0
    print("usage: python -m worker.native build [--force] | clean | status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
