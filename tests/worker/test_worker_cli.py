"""`python -m worker [ROLE] {start,dev}`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from worker.__main__ import main, parse_args


def test_role_then_command():
    args = parse_args(["driver", "start"])
    assert (args.role, args.command) == ("driver", "start")


def test_the_role_may_come_from_the_environment_instead():
    args = parse_args(["dev"])
    assert (args.role, args.command) == (None, "dev")


@pytest.mark.parametrize("argv", [["driver"], ["driver", "run"], ["a", "b", "start"]])
def test_anything_else_is_a_usage_error(argv):
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2


def test_an_unknown_role_stops_before_connecting(capsys):
    assert main(["translator", "start"]) == 2
    assert "dispatcher, driver" in capsys.readouterr().err


def test_no_role_at_all_says_how_to_give_one(monkeypatch, capsys):
    monkeypatch.delenv("LIVEKIT_AGENT_NAME", raising=False)
    monkeypatch.delenv("SWITCHBOARD_WORKER_AGENT_NAME", raising=False)
    assert main(["start"]) == 2
    assert "LIVEKIT_AGENT_NAME" in capsys.readouterr().err


def test_handler_never_imports_the_worker():
    # The handler ships alone (a serverless function); the worker's heavy deps must stay out.
    code = ("import sys, handler.app, handler.cli; "
            "bad = [m for m in sys.modules if m == 'worker' or m.startswith(('worker.', 'livekit.agents'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_process_ends_with_main_s_code_and_its_logs_written():
    # exit_now skips the interpreter's finalization (see its docstring): nothing buffered
    # may be lost on the way out, and the code is main()'s.
    code = ("import logging, sys; from worker.__main__ import exit_now; "
            "logging.basicConfig(stream=sys.stdout, level=logging.INFO); "
            "logging.getLogger('t').info('worker closed'); print('buffered', end=''); exit_now(3)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "INFO:t:worker closed\nbuffered", done.stdout
