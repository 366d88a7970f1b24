"""`make dev` as a person uses it: the one line it prints points the CLI at the stack, a
worker that dies is started again, and Ctrl-C stops it all quietly (no traceback, exit 0, so make has no error to report).

It runs infra.dev's own entry point on a pseudo-terminal, on ports and a run
directory of its own, and presses Ctrl-C the way a terminal does: SIGINT to the
foreground process group.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from infra.stack import CACHE, ROOT, Ports, port_open
from infra.workers import REGISTERED

_OFFSET = int(os.environ.get("SWITCHBOARD_TEST_PORT_OFFSET", "0"))
PORTS = Ports(livekit=18300 + _OFFSET, livekit_rtc_tcp=18301 + _OFFSET, livekit_udp=18302 + _OFFSET,
              dynamodb=18303 + _OFFSET, handler=18304 + _OFFSET)
RUN_DIR = CACHE / "run" / f"test-{_OFFSET}-dev"
READY = b"Ctrl-C stops everything."


def read_until(fd: int, out: bytearray, done, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the terminal's other end closed: everything exited
                return
            if not chunk:
                return
            out += chunk


def start_dev() -> tuple[int, int]:
    code = (f"import sys; from pathlib import Path; from infra.dev import main; from infra.stack import Ports; "
            f"sys.exit(main(Ports(**{PORTS.__dict__!r}), Path({str(RUN_DIR)!r})))")
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session of its own on the terminal, as `make dev` in a shell
        # A shell starts a foreground command with SIGINT at its default; the test run itself
        # may have been started in the background, where SIGINT is inherited as ignored, and
        # Python then installs no KeyboardInterrupt: Ctrl-C would reach nothing.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-c", code])
    return pid, fd


def worker_pids(role: str) -> list[int]:
    """This stack's worker of `role`, by the LiveKit URL in its environment (other stacks may run)."""
    url = f"LIVEKIT_URL=ws://127.0.0.1:{PORTS.livekit}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv[1:4] == [b"-m", b"worker", role.encode()] and url in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return found


def assert_all_stopped() -> None:
    assert not [p for p in (PORTS.livekit, PORTS.dynamodb, PORTS.handler) if port_open(p)]


def test_ctrl_c_while_the_stack_starts_stops_what_started_without_a_traceback():
    pid, fd = start_dev()
    out = bytearray()
    try:
        # DynamoDB Local is the first server up: press Ctrl-C while the rest are starting.
        deadline = time.monotonic() + 120
        while not port_open(PORTS.dynamodb) and time.monotonic() < deadline:
            read_until(fd, out, lambda: False, timeout=0.2)
        os.write(fd, b"\x03")
        read_until(fd, out, lambda: False, timeout=60)
        _, status = os.waitpid(pid, 0)
        pid = 0
    finally:
        if pid:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode(errors="replace")
    assert "stopped before the stack was up" in text, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert_all_stopped()


def test_make_dev_prints_one_export_line_and_stops_quietly_on_ctrl_c():
    pid, fd = start_dev()
    out = bytearray()
    try:
        read_until(fd, out, lambda: READY in out or b"Traceback" in out, timeout=240)
        text = out.decode(errors="replace")
        assert READY.decode() in text, text

        # The one line to paste: with it, and nothing else, the CLI reads this stack's log.
        [line] = [l.strip() for l in text.splitlines() if l.strip().startswith("export ")]
        assert f"AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:{PORTS.dynamodb}" in line
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LIVEKIT_", "SWITCHBOARD_"))}
        done = subprocess.run(["bash", "-c", f"{line} && {sys.executable} -m handler.cli logs --json"],
                              cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr

        # A worker that dies (an rtc panic takes the whole process) is started again; the stack stays up.
        [driver] = worker_pids("driver")
        os.killpg(driver, signal.SIGKILL)
        read_until(fd, out, lambda: b"worker-driver exited (code -9); started again" in out, timeout=30)
        assert b"worker-driver exited (code -9); started again, 1 of 5" in out, out.decode(errors="replace")
        log = RUN_DIR / "worker-driver.log"
        deadline = time.monotonic() + 120
        while log.read_text(errors="replace").count(REGISTERED) < 2 and time.monotonic() < deadline:
            read_until(fd, out, lambda: False, timeout=1)
        assert log.read_text(errors="replace").count(REGISTERED) == 2, log.read_text(errors="replace")[-3000:]
        assert worker_pids("driver") not in ([], [driver])
        assert port_open(PORTS.livekit) and port_open(PORTS.handler)

        # Ctrl-C: the terminal's interrupt character, SIGINT to the foreground process group.
        # Then again while it stops, as an impatient person would: the stop still completes.
        os.write(fd, b"\x03")
        read_until(fd, out, lambda: "stopping…".encode() in out, timeout=60)
        os.write(fd, b"\x03")
        read_until(fd, out, lambda: False, timeout=60)
        _, status = os.waitpid(pid, 0)
        pid = 0
    finally:
        if pid:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode(errors="replace")
    assert "stopping…" in text, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert os.waitstatus_to_exitcode(status) == 0, text
    # Everything it started is gone with it.
    assert_all_stopped()
    assert not re.search(r"exited:", text), text
