"""The Lambda bundle, built for real by the pinned SAM CLI (`make sam`), and what is in it.

`sam build --language-extensions` runs the Makefile's build-WebhookFunction target
(infra/bundle.sh): arm64 wheels of the locked runtime closure, the handler package,
and CPython 3.13 bytecode. The function is arm64, so its compiled extensions cannot be
loaded here; an x86_64 twin, built by the same script from the same lock, is imported
by CPython 3.13 (infra/py313.sh) from the bundle alone, and every file it loads must
be in the arm64 bundle too (an extension by its aarch64 name).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from infra.stack import ROOT

SAM = ROOT / "infra" / ".cache" / "sam-1.170.0" / "bin" / "sam"
PY313 = ROOT / "infra" / "py313.sh"
EM_AARCH64 = 183
# A CloudFormation template's tags (!Ref, !Sub, ...) as plain mappings, enough to read the built one.
_Loader = type("_Loader", (yaml.SafeLoader,), {})
_Loader.add_multi_constructor("!", lambda loader, tag, node: {tag: loader.construct_scalar(node)
                                                              if isinstance(node, yaml.ScalarNode) else None})


def exported_requirements() -> set[str]:
    """What uv.lock says the function needs: base dependencies plus the handler extra."""
    uv = os.environ.get("UV") or shutil.which("uv") or "uv"  # `uv run` sets UV to itself
    done = subprocess.run([uv, "export", "--frozen", "--no-dev", "--extra", "handler",
                           "--no-emit-project", "--no-hashes", "--project", str(ROOT)],
                          capture_output=True, text=True, check=True)
    return {normalize(line.split("==")[0]) for line in done.stdout.splitlines() if "==" in line}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def run_probe(what: str, bundle: Path, bind: Path) -> dict:
    done = subprocess.run([str(PY313), "run", "python3.13", "-I", "-S", "tests/bundle_probe.py", what, str(bundle)],
                          cwd=ROOT, env=os.environ | {"PY313_BIND": str(bind)}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    if not SAM.exists():
        pytest.fail(f"no SAM CLI at {SAM}: run `make sam` (make test does)")
    root = tmp_path_factory.mktemp("sam")
    done = subprocess.run([str(SAM), "build", "--language-extensions", "--build-dir", str(root / "build"),
                           "--template", str(ROOT / "template.yaml")], cwd=ROOT, capture_output=True, text=True,
                          env=os.environ | {"SAM_CLI_TELEMETRY": "0"}, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Build Succeeded" in done.stdout
    return root / "build"


@pytest.fixture(scope="module")
def bundle(built) -> Path:
    return built / "WebhookFunction"


@pytest.fixture(scope="module")
def twin(built) -> Path:
    out = built.parent / "twin-x86_64"
    subprocess.run([str(ROOT / "infra" / "bundle.sh"), str(out), "x86_64-manylinux_2_34"], cwd=ROOT, check=True,
                   capture_output=True, timeout=600)
    return out


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_sam_builds_both_functions_from_the_makefile_into_their_own_folders(built):
    template = yaml.load((built / "template.yaml").read_text(), Loader=_Loader)
    for name in ("WebhookFunction", "SweeperFunction"):
        properties = template["Resources"][name]["Properties"]
        assert properties["CodeUri"] == name  # .aws-sam/build/<Function>, what `sam deploy` uploads
    assert files(built / "SweeperFunction") == files(built / "WebhookFunction")
    handler = built / "WebhookFunction" / template["Resources"]["WebhookFunction"]["Properties"]["Handler"]
    assert handler.is_file() and os.access(handler, os.X_OK)


def test_the_bundle_holds_the_handler_and_its_locked_runtime_closure_only(bundle):
    present = files(bundle)
    # The handler package, exactly (sources and their bytecode), and the example routing file.
    ours = {f"handler/{p.name}" for p in (ROOT / "handler").iterdir() if p.suffix == ".py" or p.name == "run.sh"}
    assert {f for f in present if f.startswith("handler/") and "__pycache__" not in f} == ours
    assert {f for f in present if f.startswith("infra/")} == {"infra/routing.yaml"}
    # Every other file belongs to a distribution uv.lock puts in the runtime closure.
    dists = {p.name: p for p in bundle.glob("*.dist-info")}
    assert {normalize(name.split("-")[0]) for name in dists} == exported_requirements()
    recorded = {line.split(",")[0] for d in dists.values() for line in (d / "RECORD").read_text().splitlines()}
    strays = {f for f in present - recorded if not f.startswith(("handler/", "infra/")) and "__pycache__" not in f}
    assert not strays, sorted(strays)[:20]
    top = {f.split("/")[0] for f in present}
    # Nothing of the repository's but that, no dev or worker tool, no type stub, no console script.
    assert not top & {"tests", "bench", "worker", "README.md", "uv.lock", "pyproject.toml", "template.yaml",
                      "Makefile", "bin", "rich", "pygments", "numpy", "pytest", "httpx", "cfnlint"}
    assert not [t for t in top if t.endswith("-stubs")]
    assert not (bundle / "livekit" / "agents").exists() and not (bundle / "livekit" / "rtc").exists()
    # botocore keeps the models of the two services the functions call.
    assert {p.name for p in (bundle / "botocore" / "data").iterdir() if p.is_dir()} == {"dynamodb", "secretsmanager"}


def test_the_bundle_is_small(bundle, tmp_path):
    unzipped = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:  # as `sam deploy` zips it
        for path in sorted(bundle.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(bundle))
    zipped = archive.stat().st_size
    print(f"bundle: {unzipped / 2**20:.1f} MiB unzipped, {zipped / 2**20:.1f} MiB zipped")
    # Was 66 MB / 24 MB as the whole repository; Lambda's limit is 250 MB unzipped.
    assert unzipped < 50 * 2**20 and zipped < 20 * 2**20, (unzipped, zipped)


def test_every_extension_and_wheel_is_for_linux_arm64(bundle):
    extensions = list(bundle.rglob("*.so"))
    assert extensions  # pydantic-core, aiohttp, yaml, multidict...
    for so in extensions:
        header = so.read_bytes()[:20]
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == EM_AARCH64, so
        assert "x86_64" not in so.name
    for wheel in bundle.glob("*.dist-info/WHEEL"):
        tags = [line.split(":", 1)[1].strip() for line in wheel.read_text().splitlines() if line.startswith("Tag:")]
        assert tags and all(t.endswith("-any") or "aarch64" in t for t in tags), (wheel, tags)


def test_every_source_has_the_runtimes_unchecked_hash_bytecode(bundle, built):
    # SAM's zip dates every entry 1980-01-01: a timestamp .pyc would never match on Lambda.
    report = run_probe("bytecode", bundle, built.parent)
    assert report["checked"] > 500 and report["problems"] == [], report["problems"][:20]


def test_the_handlers_imports_resolve_from_the_bundle_alone_with_no_compiling(bundle, twin, built):
    report = run_probe("imports", twin, built.parent)
    assert report["python"].startswith("3.13.")
    assert report["clients"] == ["dynamodb", "secretsmanager"]
    assert report["outside"] == ["__main__"]  # nothing but the standard library and the bundle
    assert report["compiled"] == []  # every module came from its .pyc, as it will on Lambda
    assert not report["livekit_agents"]
    assert {"handler.app", "handler.cli", "handler.sweep_lambda", "aioboto3", "pydantic_core._pydantic_core"} <= set(
        report["modules"])
    arm = files(bundle)
    missing = [f for f in report["modules"].values() if f.replace("x86_64-linux-gnu", "aarch64-linux-gnu") not in arm]
    assert not missing, missing
