"""Entry point of `make bench`: runs the project's benchmarks one after another.

    python benchmarks/run.py [--quick] [--backlog N] [--skip-backlog] [--json FILE]

Each benchmark prints its figures as ratios to a baseline measured in the same run; targets print
PASS or MISS and never change the exit status.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import broker_bench
import client_bench
import semantics_bench
import starter_bench
import store_bench


def main(argv: list[str] | None = None) -> int:
    print("== store ==", flush=True)
    status = store_bench.main(argv)
    print("== broker ==", flush=True)
    status = broker_bench.main(argv) or status
    print("== client ==", flush=True)
    status = client_bench.main(argv) or status
    print("== semantics ==", flush=True)
    status = semantics_bench.main(argv) or status
    print("== starter ==", flush=True)
    return starter_bench.main(argv) or status


if __name__ == "__main__":
    # SIGTERM (a timeout, a CI job cancelled) unwinds like Ctrl-C: the servers started are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
