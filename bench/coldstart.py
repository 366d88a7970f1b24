"""Cold start: process start → first 200 on /webhook, and import time, beside a bare Starlette app.

    uv run python -m bench.coldstart [--starts 10] [--starts-no-bytecode 3] [--imports 10]

Starts DynamoDB Local and livekit-server once, then starts and stops each app
`--starts` times, interleaved, and times from spawning the process to the first
200 on POST /webhook (polled every 2 ms: /proc/net/tcp until the port listens, then POSTs):

  bare              python -m uvicorn bench.bare_app:app
  handler ignored   python -m handler.cli serve (as handler/run.sh starts it on Lambda); the first
                    request is a signed track_published: verify, decide, record (the first DynamoDB call)
  handler dispatch  the same, but the first request is a room_started that dispatches an agent
                    (also the first LiveKit call, which creates its HTTP session)

Two file sets: "bundle" is what the Lambda function ships, the locked runtime
dependencies only (uv.lock's closure of the project's dependencies: no dev group,
no worker extra), copied out of the venv into infra/.cache/bench-bundle and run
by the base interpreter with `-S`, so nothing else on sys.path can be imported by
accident; "venv" is the development venv, where dev-only packages change what
the libraries import (aiobotocore imports httpx when it is installed, and
httpx's CLI imports rich and pygments).

Python's bytecode cache decides much of a cold start, so both states are
measured: "cached" (a warm PYTHONPYCACHEPREFIX, as on any normal install) and,
with fewer starts, "no bytecode" (every module compiled from source at start,
which is what happens when PYTHONDONTWRITEBYTECODE is set and no .pyc exists, or
a read-only bundle ships without .pyc).

Import time is `python -X importtime -c "import handler.app"` (the handler
module's cumulative line) beside the same for bench.bare_app, plus where the
handler's import time goes, by top-level package. A benchmark, not a test:
nothing here asserts a time. (Over ~300 lines: the two file sets, the two
bytecode states and the import breakdown are one measurement, taken side by side.)
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections import defaultdict
from importlib import metadata
from pathlib import Path

from bench.common import bytecode_env, header, loadavg, mib, pick_port, rss_kib, summary, write_result
from infra.stack import CACHE, ROOT, Ports, Stack, handler_env
from tests.webhooks import event, signed_request

RUN_DIR = CACHE / "run" / "bench-coldstart"
BUNDLE = CACHE / "bench-bundle"


def runtime_closure() -> set[str]:
    """The distributions the deployed function ships: uv.lock's closure of the project's own dependencies
    and its `handler` extra (infra/bundle.sh's `--extra handler`)."""
    packages = {p["name"]: p for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
    project = packages["switchboard"]
    todo = [*project.get("dependencies", []), *project.get("optional-dependencies", {}).get("handler", [])]
    closure: set[str] = set()
    while todo:
        dep = todo.pop()
        if not _applies(dep.get("marker")):
            continue
        package = packages[dep["name"]]
        for extra in dep.get("extra", []):  # e.g. aioboto3 needs aiobotocore[boto3]
            todo += package.get("optional-dependencies", {}).get(extra, [])
        if dep["name"] not in closure:
            closure.add(dep["name"])
            todo += package.get("dependencies", [])
    return closure


def _applies(marker: str | None) -> bool:
    if not marker:
        return True
    try:
        from packaging.markers import Marker
    except ImportError:  # without packaging, leave out what is conditional
        return False
    return Marker(marker).evaluate()


def build_bundle() -> Path:
    """Copy the runtime closure's installed files out of the venv: the Lambda bundle's file set, offline."""
    closure = runtime_closure()
    stamp = BUNDLE / ".closure"
    if stamp.exists() and stamp.read_text() == "\n".join(sorted(closure)):
        return BUNDLE
    shutil.rmtree(BUNDLE, ignore_errors=True)
    for name in closure:
        dist = metadata.distribution(name)
        site = Path(str(dist.locate_file("")))
        for file in dist.files or ():
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue  # console scripts outside site-packages; no bytecode from the venv
            target = BUNDLE / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(site / file, target)
    stamp.write_text("\n".join(sorted(closure)))
    return BUNDLE


def interpreter(files: str) -> tuple[list[str], dict[str, str]]:
    """argv prefix and environment that run Python on the bundle or on the venv."""
    if files == "bundle":
        # The base interpreter with no site-packages of its own: only the bundle and the project's source.
        return [sys._base_executable, "-S"], {"PYTHONPATH": f"{ROOT}{os.pathsep}{BUNDLE}"}
    return [sys.executable], {}


def bench_ports() -> tuple[Ports, int]:
    taken: set[int] = set()
    ports = Ports(livekit=pick_port(39780, taken), livekit_rtc_tcp=pick_port(39781, taken), livekit_udp=pick_port(39782, taken),
                  dynamodb=pick_port(39700, taken), handler=pick_port(39710, taken))
    return ports, pick_port(39720, taken)


def listening(port: int) -> bool:
    """Whether anything listens on `port`, read from /proc rather than by connecting: connecting to a free
    port inside the ephemeral range can draw that port as the source port (a TCP self-connect), which then
    holds the port the server is about to bind."""
    suffix = f":{port:04X}"
    with open("/proc/net/tcp") as f:
        next(f)
        return any(fields[1].endswith(suffix) and fields[3] == "0A" for fields in map(str.split, f))


def first_200(argv: list[str], env: dict[str, str], port: int, request: tuple[bytes, dict], log_name: str,
              timeout: float = 120) -> dict:
    """Spawn, POST until a 200, stop. Times are from just before the spawn."""
    body, headers = request
    log = (RUN_DIR / f"{log_name}.log").open("ab")
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        while not listening(port):
            if process.poll() is not None:
                raise RuntimeError(f"{argv} exited with {process.returncode}; see {RUN_DIR / log_name}.log")
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"{argv}: not listening within {timeout:g} s")
            time.sleep(0.002)
        listened = time.perf_counter()
        while True:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("POST", "/webhook", body, headers)
            response = connection.getresponse()
            response.read()
            connection.close()
            if response.status == 200:
                done = time.perf_counter()
                return {"first_200_ms": round((done - started) * 1000, 1),
                        "listening_ms": round((listened - started) * 1000, 1),
                        "rss_mib": mib(rss_kib(process.pid)[0])}
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"{argv}: no 200 within {timeout:g} s, last {response.status}")
            time.sleep(0.002)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def starts(n: int, files: str, cached: bool, ports: Ports, app_port: int,
           room: tuple[str, str]) -> dict[str, list[dict]]:
    python, python_env = interpreter(files)
    env = handler_env(ports) | bytecode_env(cached) | python_env
    bare_env = bytecode_env(cached) | python_env
    room_name, room_sid = room
    handler_argv = python + ["-m", "handler.cli", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    bare_argv = python + ["-m", "uvicorn", "bench.bare_app:app", "--port", "{port}", "--no-access-log",
                          "--log-level", "warning"]
    meta = {"agents": [{"name": "driver"}]}
    out: dict[str, list[dict]] = defaultdict(list)
    for i in range(n):
        ignored = signed_request(event("track_published", room_name, room_sid))
        dispatch = signed_request(event("room_started", room_name, f"RM_cold_{uuid.uuid4().hex[:10]}", meta))
        runs = [("bare", bare_argv, bare_env, ignored), ("handler_ignored", handler_argv, env, ignored),
                ("handler_dispatch", handler_argv, env, dispatch)]
        for name, argv, run_env, request in (runs if i % 2 == 0 else runs[::-1]):
            port = pick_port(app_port)  # a stopped server's port can linger in TIME_WAIT
            argv = [str(port) if arg == "{port}" else arg for arg in argv]
            out[name].append(first_200(argv, run_env, port, request, name))
        print(f"  {files}, {'cached' if cached else 'no bytecode'}: {i + 1}/{n}", file=sys.stderr, flush=True)
    return out


def import_time(module: str, files: str) -> tuple[float, dict[str, float], int]:
    """(cumulative ms of `module`, self ms by top-level package, modules imported) from -X importtime."""
    python, python_env = interpreter(files)
    done = subprocess.run(python + ["-X", "importtime", "-c", f"import {module}"], cwd=ROOT,
                          env={**os.environ, **bytecode_env(), **python_env}, capture_output=True, text=True,
                          check=True)
    total = 0.0
    packages: dict[str, float] = defaultdict(float)
    count = 0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = (part.strip() for part in line[len("import time:"):].split("|"))
        count += 1
        packages[name.split(".")[0]] += int(self_us) / 1000
        if name == module:
            total = int(cumulative_us) / 1000
    return total, dict(packages), count


def wall(code: str, n: int, files: str) -> dict[str, float]:
    python, python_env = interpreter(files)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        subprocess.run(python + ["-c", code], cwd=ROOT, env={**os.environ, **bytecode_env(), **python_env}, check=True)
        times.append((time.perf_counter() - started) * 1000)
    return summary(times)


def imports(n: int, files: str) -> dict:
    import_time("handler.app", files)  # fills the bytecode cache
    import_time("bench.bare_app", files)
    handler_ms, bare_ms = [], []
    by_package: dict[str, list[float]] = defaultdict(list)
    modules = {}
    for _ in range(n):
        total, packages, count = import_time("handler.app", files)
        handler_ms.append(total)
        modules["handler.app"] = count
        for name, ms in packages.items():
            by_package[name].append(ms)
        total, _, count = import_time("bench.bare_app", files)
        bare_ms.append(total)
        modules["bench.bare_app"] = count
    top = sorted(((name, summary(v)["p50"]) for name, v in by_package.items()), key=lambda x: -x[1])[:15]
    python, python_env = interpreter(files)
    agents = subprocess.run(python + ["-c", "import sys, handler.app; print('livekit.agents' in sys.modules)"],
                            cwd=ROOT, env={**os.environ, **bytecode_env(), **python_env}, capture_output=True,
                            text=True).stdout.strip()
    return {"handler_app_ms": summary(handler_ms), "bare_app_ms": summary(bare_ms), "modules": modules,
            "handler_by_package_self_ms_p50": dict(top), "imports_livekit_agents": agents == "True",
            "wall_ms": {"python -c pass": wall("pass", n, files),
                        "import bench.bare_app": wall("import bench.bare_app", n, files),
                        "import handler.app": wall("import handler.app", n, files)}}


# Run in a fresh interpreter: the real start-up path, step by step, with the time and RSS after each step.
# The interpreter's own start (before the first line runs) is not in it; the first request is an
# ignored event handed to the pipeline directly (verify + handle: the first DynamoDB call), without HTTP.
_STAGES = """
import json, sys, time
started = time.perf_counter()
out = {}
def mark(stage):
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    out[stage] = {"ms": round((time.perf_counter() - started) * 1000, 1), "rss_mib": round(rss, 1)}
mark("interpreter up")
import starlette.applications, uvicorn
mark("starlette, uvicorn imported (all the bare app imports)")
import handler.cli
mark("handler.cli imported: pydantic, pydantic-settings, yaml, protobuf, livekit-protocol, the models")
from handler.settings import Settings
settings = Settings()
import handler.app
mark("handler.app imported: livekit-api, aiohttp (its CA bundle), jwt")
app = handler.app.create_app(settings)
mark("create_app: routing file, verifier")
import asyncio
from handler.pipeline import open_pipeline
from handler.verify import WebhookVerifier
async def main():
    async with open_pipeline(settings) as pipeline:
        mark("lifespan: aioboto3/botocore imported, DynamoDB client built")
        body, auth = sys.argv[1].encode(), sys.argv[2]
        await pipeline.handle(WebhookVerifier(settings.signing_keys).verify(body, auth))
        mark("first event verified and recorded (the first DynamoDB call)")
asyncio.run(main())
print(json.dumps(out))
"""


def stages(files: str, env: dict[str, str], request: tuple[bytes, dict]) -> dict[str, dict[str, float]]:
    python, python_env = interpreter(files)
    body, headers = request
    done = subprocess.run(python + ["-c", _STAGES, body.decode(), headers["Authorization"]], cwd=ROOT,
                          capture_output=True, text=True, check=True,
                          env={**os.environ, **env, **bytecode_env(), **python_env, "SWITCHBOARD_LOG_LEVEL": "WARNING"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(n: int, n_uncached: int, n_imports: int) -> dict:
    ports, app_port = bench_ports()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    out: dict = {"starts": n, "starts_no_bytecode": n_uncached}
    build_bundle()
    out["imports"] = {files: imports(n_imports, files) for files in ("bundle", "venv")}
    with Stack(ports, run_dir=RUN_DIR) as stack:
        env = handler_env(ports) | bytecode_env()
        stack.start_dynamodb()
        stack.create_table(env)
        stack.start_livekit(webhook_urls=["http://127.0.0.1:9/unused"])
        from livekit import api
        import asyncio

        async def make_room() -> tuple[str, str]:
            async with api.LiveKitAPI(ports.livekit_url, "devkey", "secret") as lk:
                room = await lk.room.create_room(api.CreateRoomRequest(name=f"cold-{uuid.uuid4().hex[:6]}",
                                                                       empty_timeout=600))
            return room.name, room.sid

        room = asyncio.run(make_room())
        out["stages"] = {}
        for files in ("bundle", "venv"):
            runs = [stages(files, env, signed_request(event("track_published", *room))) for _ in range(n_imports + 1)]
            out["stages"][files] = {stage: {"ms": summary([r[stage]["ms"] for r in runs[1:]])["p50"],
                                            "rss_mib": summary([r[stage]["rss_mib"] for r in runs[1:]])["p50"]}
                                    for stage in runs[0]}
        for files in ("bundle", "venv"):
            starts(1, files, True, ports, app_port, room)  # fills the bytecode cache, warms the servers
        for label, files, count, cached in (("bundle_cached", "bundle", n, True), ("venv_cached", "venv", n, True),
                                            ("bundle_no_bytecode", "bundle", n_uncached, False)):
            if not count:
                continue
            runs = starts(count, files, cached, ports, app_port, room)
            out[label] = {name: {field: summary([r[field] for r in rs]) for field in rs[0]} for name, rs in runs.items()}
            bare = out[label]["bare"]["first_200_ms"]["p50"]
            for name in ("handler_ignored", "handler_dispatch"):
                out[label][name]["x_bare_p50"] = round(out[label][name]["first_200_ms"]["p50"] / bare, 2)
    out["loadavg_at_end"] = loadavg()
    return out


def report(out: dict) -> str:
    lines = ["| bytecode | app | first 200 p50 ms | p95 ms | × bare | listening p50 ms | RSS after first 200 MiB |",
             "|---|---|---|---|---|---|---|"]
    for label in ("bundle_cached", "venv_cached", "bundle_no_bytecode"):
        for name, r in out.get(label, {}).items():
            lines.append(f"| {label} | {name} | {r['first_200_ms']['p50']} | {r['first_200_ms']['p95']} | "
                         f"{r.get('x_bare_p50', 1.0)} | {r['listening_ms']['p50']} | {r['rss_mib']['p50']} |")
    for files, i in out["imports"].items():
        lines.append(f"\n{files}: -X importtime, cumulative ms (p50 of {i['handler_app_ms']['n']}): handler.app "
                     f"{i['handler_app_ms']['p50']} ({i['modules']['handler.app']} modules), bench.bare_app "
                     f"{i['bare_app_ms']['p50']} ({i['modules']['bench.bare_app']} modules); imports livekit.agents: "
                     f"{i['imports_livekit_agents']}")
        lines.append(f"{files}: wall ms p50: " + ", ".join(f"{k}: {v['p50']}" for k, v in i["wall_ms"].items()))
        lines.append(f"{files}: handler.app import, self ms by package: " + ", ".join(
            f"{k} {v}" for k, v in i["handler_by_package_self_ms_p50"].items()))
    for files, steps in out["stages"].items():
        lines.append(f"\n{files}: start-up step by step, in-process (p50 ms since the first line; RSS MiB):")
        lines += [f"  {v['ms']:7.1f} ms  {v['rss_mib']:6.1f} MiB  {k}" for k, v in steps.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=10, help="starts per app with a warm bytecode cache")
    parser.add_argument("--starts-no-bytecode", type=int, default=3, help="starts per app compiling from source")
    parser.add_argument("--imports", type=int, default=10, help="-X importtime runs per module")
    args = parser.parse_args()
    info = header()
    info["coldstart"] = run(args.starts, args.starts_no_bytecode, args.imports)
    path = write_result("coldstart", info)
    print(report(info["coldstart"]))
    print(f"\n{json.dumps(info['machine'])}\nresults: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
