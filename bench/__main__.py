"""Every benchmark, one after another: `make bench`, or `uv run python -m bench`.

    uv run python -m bench [--quick]

1. bench.dispatch   room creation → agent joined, Switchboard vs LiveKit's own dispatch
2. bench.webhook    /webhook throughput and latency beside a bare Starlette endpoint; the handler's RSS
3. bench.coldstart  process start → first 200, and import time, beside a bare Starlette app
4. bench.burst      N rooms at the same instant against one worker per name: agents first time, after the sweeper
5. bench.cost       DynamoDB read and write units of one realistic room, and the price per 10,000 rooms
6. bench.scale      first-dispatch throughput at concurrency 8, 32, 128 with one and two handler processes

Each starts its own servers on its own ports, stops them, writes
bench/results/<name>-<time>.json and prints a Markdown table. They run one
after another, never together: they share the machine's two cores. `--quick`
is a smoke run with small counts; its numbers mean nothing. Benchmarks, not
tests: nothing asserts a time. See BENCHMARKS.md for what the numbers mean.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from infra.stack import ROOT


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: check that everything runs")
    args = parser.parse_args()
    quick = {"bench.dispatch": ["--rooms", "4", "--warmup", "1"],
             "bench.webhook": ["--requests", "200", "--rounds", "1"],
             "bench.coldstart": ["--starts", "2", "--starts-no-bytecode", "1", "--imports", "2"],
             "bench.burst": ["--rooms", "2"],
             "bench.cost": [],
             "bench.scale": ["--requests", "100", "--rounds", "1"]}
    for module, small in quick.items():
        print(f"\n## {module}\n", flush=True)
        done = subprocess.run([sys.executable, "-m", module, *(small if args.quick else [])],
                              cwd=ROOT)
        if done.returncode:
            return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
