"""Cold start of the Lambda bundle itself: CPython 3.13, the file set `sam build` ships.

    make bench-lambda        # = infra/bundle.sh infra/.cache/bench-lambda/unchecked-hash x86_64-manylinux_2_34
                             #   && infra/py313.sh run python3 -m bench.lambda_coldstart [--starts 10]

Run inside the project's CPython 3.13 rootfs (infra/py313.sh), on an x86_64 twin of the
function's bundle built by the same infra/bundle.sh from the same lock (the arm64
bundle's extensions cannot load here). Three copies of it, as Lambda would see each,
read-only (PYTHONDONTWRITEBYTECODE) and unzipped from SAM's zip, which dates every
entry 1980-01-01:

  no bytecode      the bundle as the python-uv build shipped it: every start compiles every module
  timestamp pyc    `compileall` with the default invalidation mode: the .pyc records its source's
                   build-time mtime, the unzipped source says 1980, so Python compiles again
  unchecked-hash   infra/bundle.sh's bytecode, used as is

Per copy and start, interleaved: the CPU the server process used until its first 200
(user + system, /proc), and the wall time from spawning handler/run.sh (exactly what
Lambda Web Adapter's bootstrap execs) to the first 200 on GET /healthz, which is when
the adapter ends init. Plus `import handler.app`'s CPU in a fresh interpreter. No
DynamoDB or LiveKit call happens before /healthz answers (the lifespan builds its
clients; none connects), so no server is needed. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.common import loadavg, summary, write_result
from infra.stack import CACHE, ROOT

WORK = CACHE / "bench-lambda"
EPOCH_1980 = 315532800  # 1980-01-01T00:00:00Z, the date SAM's zip gives every entry
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def build(copies: dict[str, Path]) -> None:
    twin = WORK / "unchecked-hash"  # built outside the rootfs, by infra/bundle.sh (it needs uv)
    if not (twin / "handler" / "run.sh").is_file():
        raise SystemExit(f"no bundle at {twin}: run `make bench-lambda`")
    for name in ("no-bytecode", "timestamp-pyc"):
        shutil.rmtree(copies[name], ignore_errors=True)
        shutil.copytree(twin, copies[name], ignore=shutil.ignore_patterns("__pycache__"))
    # Default invalidation mode (timestamp) at build time, sources dated now; then dated as SAM's zip
    # dates everything, 1980, which no longer matches the mtime each .pyc recorded.
    now = time.time()
    for path in copies["timestamp-pyc"].rglob("*.py"):
        os.utime(path, (now, now))
    subprocess.run([sys.executable, "-I", "-m", "compileall", "-q", "-j", "0", str(copies["timestamp-pyc"])], check=True)
    for root in copies.values():
        for path in root.rglob("*"):
            os.utime(path, (EPOCH_1980, EPOCH_1980), follow_symlinks=False)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lambda_env(bundle: Path, port: int) -> dict[str, str]:
    # What the function's environment holds that matters before /healthz, minus the secret's ARN.
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
            "LAMBDA_TASK_ROOT": str(bundle), "_HANDLER": "handler/run.sh", "AWS_LWA_PORT": str(port),
            "AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
            "LIVEKIT_URL": "https://example.livekit.cloud", "LIVEKIT_API_KEY": "APIbench",
            "LIVEKIT_API_SECRET": "a-benchmark-secret-that-is-long-enough", "SWITCHBOARD_ALLOWED_AGENTS": "driver",
            "SWITCHBOARD_TABLE_NAME": "bench", "SWITCHBOARD_LOG_LEVEL": "WARNING",
            "AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH": "/_lwa/before-checkpoint",
            "AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH": "/_lwa/after-restore"}


def start(bundle: Path) -> dict[str, float]:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(["/bin/bash", "-c", 'exec -- "${LAMBDA_TASK_ROOT}/${_HANDLER}"'],
                               env=lambda_env(bundle, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"{bundle}: the server exited with {process.returncode}") from None
                time.sleep(0.002)
        wall = time.perf_counter() - started
        return {"first_200_s": round(wall, 3), "cpu_until_ready_s": round(cpu_seconds(process.pid), 3)}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)


def import_cpu(bundle: Path) -> float:
    code = "import handler.app"
    before = os.times()
    subprocess.run([sys.executable, "-I", "-B", "-S", "-c", f"import sys; sys.path.insert(0, {str(bundle)!r}); {code}"],
                   env={"PYTHONDONTWRITEBYTECODE": "1"}, check=True)
    after = os.times()
    return round((after.children_user - before.children_user) + (after.children_system - before.children_system), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=10)
    args = parser.parse_args()
    copies = {name: WORK / name for name in ("no-bytecode", "timestamp-pyc", "unchecked-hash")}
    build(copies)
    out: dict = {"python": sys.version.split()[0], "loadavg_before": loadavg(), "starts": args.starts}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in copies}
    for i in range(args.starts):
        for name, bundle in (list(copies.items()) if i % 2 == 0 else list(copies.items())[::-1]):
            runs[name].append(start(bundle) | {"import_cpu_s": import_cpu(bundle)})
        print(f"  {i + 1}/{args.starts}", file=sys.stderr, flush=True)
    out["results"] = {name: {field: summary([r[field] for r in rs], 3) for field in rs[0]} for name, rs in runs.items()}
    out["loadavg_after"] = loadavg()
    out["bundle_mib"] = round(sum(p.stat().st_size for p in copies["unchecked-hash"].rglob("*") if p.is_file())
                              / 2**20, 1)
    path = write_result("lambda-coldstart", out)
    print("| bundle | CPU until ready, p50 (min–max) | start → first 200, p50 | import handler.app CPU, p50 |")
    print("|---|---|---|---|")
    for name, r in out["results"].items():
        print(f"| {name} | {r['cpu_until_ready_s']['p50']} s ({r['cpu_until_ready_s']['min']}–"
              f"{r['cpu_until_ready_s']['max']}) | {r['first_200_s']['p50']} s | {r['import_cpu_s']['p50']} s |")
    print(json.dumps({"python": out["python"], "load": [out["loadavg_before"], out["loadavg_after"]]}))
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
