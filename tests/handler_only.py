"""pytest plugin for the handler's runtime alone (`make test-py313`: CPython 3.13, no worker installed).

    pytest -p tests.handler_only --ignore=tests/worker tests/   the handler's tests
    pytest -p tests.handler_only --the-rest tests/               everything else, tests/worker's too

`make test` runs the rest first, alone (its tests run workers, and real audio in real time:
the machine is theirs), then the handler's tests on 3.11 and on 3.13 side by side.

Deselects, by reading each test's own source, what needs more than the handler:
a livekit-agents worker (`start_test_agent`, `worker.` imports: the worker stays
on 3.11), cfn-lint's command line (a template check, the same on any Python), or the
SAM CLI (tests/test_bundle.py, which itself runs 3.13 on the bundle).
Everything else runs; pytest reports the count it deselected, and this plugin
names them, so nothing is left out quietly.
"""

from __future__ import annotations

import functools
import inspect
import re
from pathlib import Path

import pytest

NEEDS_MORE = {
    # tests/test_capacity.py starts the role workers itself (its `role_workers` fixture).
    "a livekit-agents worker": re.compile(
        r"start_test_agent|start_workers|\brole_workers\b|\bfrom worker\b|\bimport worker\b"),
    # tests/test_dev_stack.py: `make dev` starts the role workers too.
    "`make dev`, which starts the workers": re.compile(r"\bstart_dev\("),
    "cfn-lint's command line": re.compile(r"\bcfn_lint\("),
    # tests/test_bundle.py: it runs the 3.13 rootfs itself, from outside it.
    "the SAM CLI and uv, outside the rootfs": re.compile(r"\bstr\(SAM\)"),
}


# A module that imports the agents' SDK (livekit.rtc ships with livekit-agents) is not collected at all.
WORKER_MODULE = re.compile(r"^(from livekit import [^\n]*\brtc\b|import livekit\.rtc|from livekit\.rtc )", re.M)
ignored_modules: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--the-rest", action="store_true",
                     help="run what the handler-only selection leaves out, and only that")


def pytest_ignore_collect(collection_path, config: pytest.Config) -> bool | None:
    if config.getoption("--the-rest"):
        return None
    if collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        if WORKER_MODULE.search(collection_path.read_text()):
            ignored_modules.append(str(collection_path.relative_to(config.rootpath)))
            return True
    return None


def why_not_here(item: pytest.Item) -> str | None:
    """Why the test needs more than the handler, from its own source and its fixtures' ("workers")."""
    function = getattr(item, "function", None)
    if function is None:
        return None
    functions = [function]
    info = getattr(item, "_fixtureinfo", None)
    for definitions in (info.name2fixturedefs.values() if info else ()):
        functions += [d.func for d in definitions if "site-packages" not in (inspect.getsourcefile(d.func) or "")]
    source = "\n".join(inspect.getsource(f) for f in functions)
    return next((why for why, pattern in NEEDS_MORE.items() if pattern.search(source)), None)


@functools.cache
def _the_workers(path: Path) -> bool:
    """tests/worker, or a module that imports the agents' SDK (read once per module, not per test)."""
    return path.parent.name == "worker" or bool(WORKER_MODULE.search(path.read_text()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--the-rest"):
        rest = [item for item in items if _the_workers(item.path) or why_not_here(item)]
        config.hook.pytest_deselected(items=[item for item in items if item not in rest])
        items[:] = rest
        return
    kept, dropped = [], []
    for item in items:
        why = why_not_here(item)
        (dropped if why else kept).append((item, why))
    if dropped:
        config.hook.pytest_deselected(items=[item for item, _ in dropped])
        items[:] = [item for item, _ in kept]
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        for path in ignored_modules:
            reporter.write_line(f"handler-only: not collected {path} (imports livekit.rtc: a worker test)")
        for item, why in dropped:
            reporter.write_line(f"handler-only: deselected {item.nodeid} (needs {why})")
