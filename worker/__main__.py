"""Entry point: ``python -m worker replay …`` or ``python -m worker run`` (the Kafka worker)."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m worker {replay,run} ...\n"
              "  replay [--until TS] [--lateness-ms N] FILE   re-sessionise a JSON-lines log\n"
              "  run                                           start the Kafka worker")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "replay":
        from .replay import main as replay_main
        return replay_main(rest)
    if command == "run":
        from .app import main as run_main
        return run_main(rest)
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
