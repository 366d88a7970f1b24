"""What every benchmark shares: statistics, the machine and versions, RSS, results files.

Nothing here starts a server; each benchmark module starts its own on its own ports.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import threading
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

from jwt.warnings import InsecureKeyLengthWarning

from infra.stack import CACHE, ROOT

# livekit-server --dev signs with the 6-byte secret "secret"; PyJWT would warn on every token (as in pytest's config).
warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)

RESULTS = ROOT / "bench" / "results"
# Bytecode for the processes benchmarks start, kept out of the source tree and the venv.
# Without it every process recompiles its imports from source when PYTHONDONTWRITEBYTECODE
# is set (as it is in this sandbox) or the venv is read-only, and start-up measures the compiler.
PYCACHE = CACHE / "pycache-bench"


def bytecode_env(cached: bool = True) -> dict[str, str]:
    """Environment for a child Python: with a warm bytecode cache, or compiling everything."""
    if cached:
        return {"PYTHONPYCACHEPREFIX": str(PYCACHE), "PYTHONDONTWRITEBYTECODE": ""}
    return {"PYTHONPYCACHEPREFIX": str(PYCACHE / "never-written"), "PYTHONDONTWRITEBYTECODE": "1"}


def bindable(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def pick_port(preferred: int, taken: set[int] | None = None) -> int:
    """`preferred`, or the next port after it that nothing holds. The bench ranges lie inside Linux's
    ephemeral range, so another process's outgoing connection can sit on any one of them."""
    taken = taken if taken is not None else set()
    port = preferred
    while port in taken or not bindable(port):
        port += 1
    taken.add(port)
    return port


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: a value that was actually measured."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def summary(values: list[float], digits: int = 1) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(percentile(values, 50), digits), "p95": round(percentile(values, 95), digits),
            "p99": round(percentile(values, 99), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "mean": round(sum(values) / len(values), digits)}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {"arch": platform.machine(), "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1),
            "kernel": platform.release(), "loadavg_at_start": loadavg()}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("starlette", "uvicorn", "livekit-api", "livekit-protocol", "livekit", "livekit-agents",
                    "aioboto3", "aiobotocore", "botocore", "pydantic", "pydantic-settings", "aiohttp", "protobuf"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    lk = subprocess.run([str(CACHE / "bin" / "livekit-server"), "--version"], capture_output=True, text=True)
    out["livekit-server"] = lk.stdout.strip().rsplit(" ", 1)[-1]
    out["dynamodb-local"] = (CACHE / "dynamodb").resolve().name.removeprefix("dynamodb-")
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    out["java"] = java[0] if java else ""
    return out


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB: now, and its peak so far."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


class RssSampler:
    """Samples a process's RSS on a thread while a block runs; `peak_kib` is the highest sample."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(rss_kib(self.pid)[0])
            except FileNotFoundError:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_kib(self) -> int:
        return max(self.samples, default=0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (whole process, every thread)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{int(time.time())}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def header() -> dict[str, Any]:
    return {"when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": machine(), "versions": versions()}
