"""The project's import graph, read from the source (ast, in-process, well under a second).

- No cycle between the project's modules, anywhere in the repository. Every import counts:
  at the top, inside a function (a lazy import is still a dependency) and under
  TYPE_CHECKING (a cycle of types is a tangle too).
- The handler never imports livekit-agents (its import time is the function's cold start),
  directly or through any project module it imports.
- The handler's own closure stays inside handler/ (the Lambda bundle carries nothing else),
  worker/ knows nothing of infra/ (the dev stack starts workers, not the other way round),
  and what the worker image runs imports only what worker/Dockerfile copies into it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("handler", "worker", "infra", "tests", "bench")
# livekit-agents and its plugins (which import it).
AGENTS = ("livekit.agents", "livekit.plugins")


@dataclass(frozen=True)
class Import:
    module: str  # the module named by the statement, absolute
    names: tuple[str, ...]  # for `from module import a, b`; () for `import module`
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
            if ".cache" not in p.parts and "__pycache__" not in p.parts}


def imports_of(name: str, path: Path) -> Iterator[Import]:
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                anchor = package[:len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield Import(base, tuple(alias.name for alias in node.names), node.lineno)


def resolve(statement: Import, modules: dict[str, Path]) -> set[str]:
    """The project modules a statement imports: the module itself, or `from package import submodule`."""
    found = set()
    target = statement.module
    while target and target not in modules:
        target = target.rpartition(".")[0]
    if target:
        found.add(target)
    for alias in statement.names:
        if f"{statement.module}.{alias}" in modules:
            found.add(f"{statement.module}.{alias}")
    return found


def parents(name: str) -> list[str]:
    """The packages Python imports before a module: `a.b.c` runs a/__init__.py and a/b/__init__.py."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def graph() -> tuple[dict[str, set[str]], dict[str, list[Import]]]:
    modules = project_modules()
    edges: dict[str, set[str]] = {}
    statements: dict[str, list[Import]] = {}
    for name, path in modules.items():
        statements[name] = list(imports_of(name, path))
        edges[name] = {m for s in statements[name] for m in resolve(s, modules)} - {name}
    return edges, statements


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def imports_agents(statement: Import) -> bool:
    if statement.module.startswith(AGENTS) and (statement.module + ".").split(".")[1] in {"agents", "plugins"}:
        return True
    return statement.module == "livekit" and bool({"agents", "plugins"} & set(statement.names))


def reachable(start: str, edges: dict[str, set[str]]) -> dict[str, str]:
    """Every project module importing `start` runs, each with the module that imported it first."""
    came_from = {start: ""}
    todo = [start]
    while todo:
        here = todo.pop()
        for there in sorted(edges[here] | {p for e in edges[here] for p in parents(e) if p in edges}):
            if there not in came_from:
                came_from[there] = here
                todo.append(there)
    return came_from


def path_to(target: str, came_from: dict[str, str]) -> str:
    chain = [target]
    while came_from[chain[-1]]:
        chain.append(came_from[chain[-1]])
    return " -> ".join(reversed(chain))


def test_no_import_cycle_between_the_projects_modules():
    edges, _ = graph()
    assert cycles(edges) == []


def test_the_handler_never_imports_livekit_agents():
    edges, statements = graph()
    for start in (m for m in edges if m.split(".")[0] == "handler"):
        came_from = reachable(start, edges)
        for module in came_from:
            for statement in statements[module]:
                assert not imports_agents(statement), (
                    f"{path_to(module, came_from)} imports {statement.module} {statement.names or ''} "
                    f"(line {statement.line})")


def test_the_handler_imports_nothing_outside_handler():
    # The Lambda bundle is handler/ and the handler extra's closure: infra/bundle.sh.
    edges, _ = graph()
    outside = {(m, e) for m in edges if m.split(".")[0] == "handler"
               for e in edges[m] if e.split(".")[0] != "handler"}
    assert outside == set()


def test_the_worker_knows_nothing_of_infra_tests_or_bench():
    edges, _ = graph()
    outside = {(m, e) for m in edges if m.split(".")[0] == "worker"
               for e in edges[m] if e.split(".")[0] in {"infra", "tests", "bench"}}
    assert outside == set()


def image_files() -> tuple[set[str], set[str]]:
    """The project's .py files in the worker image: worker/ less Dockerfile.dockerignore's, plus the COPY'd others."""
    dockerfile = (ROOT / "worker" / "Dockerfile").read_text()
    ignored = {line for line in (ROOT / "worker" / "Dockerfile.dockerignore").read_text().splitlines()
               if line.startswith("worker/") and line.endswith(".py")}
    worker = {str(p.relative_to(ROOT)) for p in (ROOT / "worker").glob("*.py")} - ignored
    copied = set()
    for sources in re.findall(r"^COPY\s+(?!--)(.+)\s+\S+$", dockerfile, flags=re.M):
        copied |= {s for s in sources.split() if s.endswith(".py")}
    return worker, copied


def test_what_the_worker_image_runs_imports_only_what_the_image_holds():
    edges, _ = graph()
    worker, copied = image_files()
    assert copied, "worker/Dockerfile copies no single module: this test reads its COPY lines"
    held = {module_name(ROOT / f) for f in worker | copied}
    for start in sorted(held):
        came_from = reachable(start, edges)
        missing = set(came_from) - held
        assert not missing, [path_to(m, came_from) for m in sorted(missing)]


def test_the_graph_sees_what_it_must():
    # The reader itself: a lazy import, a relative one, `from package import module`.
    edges, statements = graph()
    assert "handler.policy" in edges["handler.pipeline"]
    assert any(s.module == "livekit.agents" for s in statements["worker.server"])
    assert imports_agents(Import("livekit.agents.voice", (), 1))
    assert imports_agents(Import("livekit", ("agents",), 1))
    assert not imports_agents(Import("livekit", ("api", "rtc"), 1))
    assert not imports_agents(Import("livekit.api", (), 1))
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
