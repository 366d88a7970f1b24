"""Run by CPython 3.13 (the function's runtime) on a built bundle; prints one JSON document.

    python3.13 -I -S tests/bundle_probe.py bytecode BUNDLE    every .py's .pyc: valid for this
                                                             interpreter, unchecked-hash, source hash right
    python3.13 -I -S tests/bundle_probe.py imports BUNDLE     import the handler's entry points from BUNDLE
                                                             alone; report each module's file, and any
                                                             module compiled from source (no usable .pyc)

-I -S: no environment, no site-packages, not even this script's directory: only the
standard library and BUNDLE can be imported, as in Lambda's /var/task.
"""

from __future__ import annotations

import importlib.util
import json
import marshal
import sys
from pathlib import Path

UNCHECKED_HASH = 0b01  # PEP 552: bit 0 hash-based, bit 1 check_source (clear: never re-hashed)


def bytecode(root: Path) -> dict:
    problems, checked = [], 0
    for source in sorted(root.rglob("*.py")):
        checked += 1
        cached = Path(importlib.util.cache_from_source(str(source)))
        rel = str(source.relative_to(root))
        if not cached.is_file():
            problems.append(f"{rel}: no {cached.name}")
            continue
        data = cached.read_bytes()
        flags = int.from_bytes(data[4:8], "little")
        if data[:4] != importlib.util.MAGIC_NUMBER:
            problems.append(f"{rel}: magic {data[:4].hex()} is not CPython {sys.version.split()[0]}'s")
        elif flags != UNCHECKED_HASH:
            problems.append(f"{rel}: flags {flags:#04b}, not unchecked-hash")
        elif data[8:16] != importlib.util.source_hash(source.read_bytes()):
            problems.append(f"{rel}: the .pyc was compiled from other source")
        else:
            code = marshal.loads(data[16:])
            if code.co_filename != f"/var/task/{rel}":
                problems.append(f"{rel}: code names {code.co_filename}, not its /var/task path")
    return {"checked": checked, "problems": problems}


def imports(root: Path) -> dict:
    sys.path.insert(0, str(root))
    sys.dont_write_bytecode = True
    compiled: list[str] = []
    # The import system compiles a module's source (SourceLoader.source_to_code) only when it
    # has no usable .pyc; count those calls. (anyio parses its own source with ast on purpose.)
    import _frozen_importlib_external as machinery

    source_to_code = machinery.SourceLoader.source_to_code

    def counted(self, data, path, *args, **kwargs):
        compiled.append(str(path))
        return source_to_code(self, data, path, *args, **kwargs)

    machinery.SourceLoader.source_to_code = counted
    import handler.app  # noqa: F401  the webhook function's server (run.sh: python3 -m handler.cli serve)
    import handler.cli  # noqa: F401
    import handler.dynamo  # noqa: F401  opened in the lifespan
    import handler.sweep_lambda  # noqa: F401  the sweeper function's handler
    from handler.app import create_app
    from handler.settings import Settings

    create_app(Settings(livekit_secret_arn=None, allowed_agents="driver", routing_file=str(root / "infra/routing.yaml")),
               store=object(), dispatcher=object())
    import aioboto3  # noqa: F401
    import botocore.session

    session = botocore.session.get_session()
    clients = [session.create_client(name, region_name="eu-west-1").meta.service_model.service_name
               for name in ("dynamodb", "secretsmanager")]
    files = {}
    for name, module in sorted(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and path.startswith(str(root)):
            files[name] = str(Path(path).relative_to(root))
    outside = sorted(name for name, module in sys.modules.items()
                     if getattr(module, "__file__", None) and not module.__file__.startswith((str(root), sys.prefix)))
    return {"modules": files, "outside": outside, "clients": clients,
            "compiled": [str(Path(p).relative_to(root)) for p in compiled],
            "livekit_agents": "livekit.agents" in sys.modules, "python": sys.version.split()[0]}


if __name__ == "__main__":
    what, where = sys.argv[1], Path(sys.argv[2])
    print(json.dumps({"bytecode": bytecode, "imports": imports}[what](where)))
