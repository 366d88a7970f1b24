"""The dispatch-log page in a real browser (Debian's chromium, driven by Playwright) on the real stack.

What a person would check: the room's agents and their statuses in the list, the
room's timeline in the order things happened, a FAILED agent's reason, and the
page catching up by itself when the room ends. The test saves screenshots.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from livekit import api

from handler.pipeline import open_pipeline
from handler.settings import Settings
from handler.sweeper import Sweeper
from infra.stack import CACHE, ROOT
from tests.conftest import REVIEW_UI_PORT
from tests.livekit_helpers import eventually, lk_api, log_json

CHROMIUM = Path("/usr/bin/chromium")  # Debian's, installed by `make tools`
SCREENSHOTS = CACHE / "run" / f"test-{os.environ.get('SWITCHBOARD_TEST_PORT_OFFSET', '0')}" / "screenshots"
HOSTILE = "<b>eve</b> [/x]"


def run_async(make_coroutine) -> None:
    """Run a coroutine to the end in a thread of its own: Playwright's sync API owns this thread's loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(make_coroutine())).result()


@pytest.fixture(scope="module")
def review_ui(local_stack, aws):
    """`switchboard ui` as an operator runs it, on a test port, against the test stack's table."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make tools` installs Debian's chromium for the page's browser test")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log_path = SCREENSHOTS.parent / "review-ui.log"
    log = log_path.open("wb")
    process = subprocess.Popen([sys.executable, "-m", "handler.cli", "ui", "--port", str(REVIEW_UI_PORT),
                                "--refresh", "1s"], cwd=ROOT, env={**os.environ, **local_stack.env, **aws},
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{REVIEW_UI_PORT}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/page.css", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"switchboard ui did not start: {log_path.read_text()}")
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Playwright's own browser download is not reachable; Debian's chromium is the one it drives.
        instance = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def driver_worker(local_stack):
    worker = local_stack.start_test_agent("driver", name="agent-driver-review")
    yield
    worker.stop()


def test_the_room_list_and_page_show_agents_timeline_and_a_failure(local_stack, aws, review_ui, browser,
                                                                   driver_worker, room_name):
    from playwright.sync_api import expect

    # A room asking for a driver (a worker is registered) and an assistant (none is): the
    # sweeper, with short deadlines, re-dispatches the assistant and then gives up on it.
    metadata = {"agents": [{"name": "driver"}, {"name": "assistant"}],
                "on_participant_joined": [{"name": "translator"}]}

    async def scenario() -> None:
        async with lk_api(local_stack.livekit_url) as lk:
            await lk.room.create_room(api.CreateRoomRequest(name=room_name, metadata=json.dumps(metadata),
                                                            empty_timeout=120))
        await eventually(lambda: {r["agent_name"]: r["status"] for r in log_json(aws, "--room", room_name)}
                         == {"driver": "JOINED", "assistant": "DISPATCHED"}, timeout=60)
        settings = Settings(**{"confirm_deadline_seconds": 0.5, "max_dispatch_attempts": 2})
        async with open_pipeline(settings) as pipeline:
            sweeper = Sweeper(pipeline)

            async def failed():
                await sweeper.sweep()
                return any(r["agent_name"] == "assistant" and r["status"] == "FAILED"
                           for r in log_json(aws, "--room", room_name))
            await eventually(failed, timeout=60, interval=0.5)

    env_backup = dict(os.environ)
    os.environ.update(local_stack.env)  # the sweeper's Settings read the stack's keys
    try:
        run_async(scenario)
    finally:
        os.environ.clear()
        os.environ.update(env_backup)

    # The same answer in words, as `explain --agent` gives it (printed for the README's example).
    from tests.livekit_helpers import switchboard

    answer = switchboard("explain", "--room", room_name, "--agent", "assistant", env=aws | {"COLUMNS": "100"})
    assert "assistant is not in the room: its dispatch failed for good" in answer.stdout, answer.stdout + answer.stderr
    assert "gave up after 2 attempt(s)" in answer.stdout
    print(answer.stdout)

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        # The list: the room with each agent's status, found through the room filter as `logs` has it.
        page.goto(f"{review_ui}/?room={room_name}")
        row = page.locator(f'tr[data-room="{room_name}"]')
        expect(row).to_be_visible()
        expect(row.locator('[data-agent="driver"]')).to_contain_text("JOINED")
        expect(row.locator('[data-agent="assistant"]')).to_contain_text("FAILED")
        page.goto(f"{review_ui}/?status=FAILED&agent=assistant")
        expect(page.locator(f'tr[data-room="{room_name}"]')).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "review-rooms.png"), full_page=True)

        # The room page: agents, the timeline in order, the failure's reason, to the millisecond.
        page.goto(f"{review_ui}/?room={room_name}")
        page.get_by_role("link", name=room_name).click()
        expect(page.locator("h1")).to_have_text(f"room {room_name}")
        slots = page.locator("tr.slot")
        expect(slots.filter(has_text="driver")).to_contain_text("JOINED")
        failed = slots.filter(has_text="assistant")
        expect(failed).to_contain_text("FAILED")
        expect(failed).to_contain_text("no worker registered for agent_name assistant")
        expect(failed).to_contain_text("gave up after 2 attempt(s)")
        expect(page.locator("svg.timeline")).to_be_visible()

        order = page.locator("table.steps tr.step").evaluate_all("rows => rows.map(r => r.dataset.what)")
        assert order.index("room_started") < order.index("driver CLAIMED") < order.index("driver DISPATCHED") \
            < order.index("driver JOINED"), order
        assert order.index("assistant DISPATCHED") < order.index("assistant FAILED"), order
        drawn = page.locator("svg.timeline g.step").evaluate_all("steps => steps.map(s => s.dataset.what)")
        assert drawn == order  # the picture shows the same steps in the same order
        times = page.locator("table.steps tr.step td.time").all_inner_texts()
        assert all(len(t) == 12 and t[8] == "." for t in times), times  # HH:MM:SS.mmm
        assert times == sorted(times)
        page.screenshot(path=str(SCREENSHOTS / "review-room.png"), full_page=True)

        # A person joins and the room ends while the page is open: it catches up on its own.
        async def person_then_end() -> None:
            from tests.webhooks import event, participant, signed_request
            import httpx

            sid = log_json(aws, "--room", room_name)[0]["room_sid"]
            raw, headers = signed_request(event("participant_joined", room_name, sid, metadata,
                                                participant=participant(HOSTILE)))
            async with httpx.AsyncClient(timeout=30) as client:
                assert (await client.post(local_stack.webhook_url, content=raw, headers=headers)).status_code == 200
            async with lk_api(local_stack.livekit_url) as lk:
                await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))
        run_async(person_then_end)
        expect(slots.filter(has_text="driver")).to_contain_text("ENDED", timeout=30_000)
        # Other people's strings are text, not markup.
        expect(page.locator("tr.slot", has_text="translator")).to_contain_text(f"translator for {HOSTILE}")
        assert page.locator("tr.slot b").count() == 0
        expect(page.locator("table.steps")).to_contain_text("room_finished", timeout=30_000)
        page.screenshot(path=str(SCREENSHOTS / "review-room-ended.png"), full_page=True)
    finally:
        page.close()
    # docs/review-room.png, the README's picture, is a copy of review-room-ended.png from a run of this test.
    assert (SCREENSHOTS / "review-room-ended.png").stat().st_size > 10_000
