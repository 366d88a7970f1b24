# Two commands on a fresh machine:
#   make dev    set up, then run the local stack (livekit-server, DynamoDB Local, handler)
#   make test   set up, then run every test against the real servers
SHELL := /bin/bash
UV_VERSION := 0.9.30
UV := python3 -m uv

.PHONY: setup tools python fetch dev demo test image image-test soak bench

setup: tools python fetch

# Command-line tools the project needs that are not Python packages.
tools:
	@python3 -m uv --version 2>/dev/null | grep -q "$(UV_VERSION)" || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	@command -v espeak-ng >/dev/null || { apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null; }

python:
	$(UV) sync --frozen --all-extras

fetch:
	infra/fetch.sh

dev: setup
	$(UV) run python -m infra.stack dev

# With `make dev` running: a drill room, the dispatch log, both agents joining, who spoke when.
demo: setup
	$(UV) run python -m worker.demo

# Every test, the worker image's included: tests/worker/test_worker_image.py (`make image-test`)
# runs `make image` first, so a machine that cannot build it fails that test with the reason.
test: setup
	$(UV) run pytest

# The worker image (worker/Dockerfile) with Debian's podman, from stand-in base images made here
# where the public ones cannot be pulled; cached in infra/.cache/images. See infra/image.sh.
image:
	infra/image.sh

# The built image run as template.yaml's ECS task definition runs it, against the local stack.
image-test: setup image
	SWITCHBOARD_WORKER_IMAGE_BUILT=1 $(UV) run pytest tests/worker/test_worker_image.py

# The long load run: 200 rooms x 2 agents through the real livekit-server (tests/test_load.py).
soak: setup
	SWITCHBOARD_LOAD_ROOMS=200 SWITCHBOARD_LOAD_WORKERS=3 SWITCHBOARD_LOAD_CONFIRM_DEADLINE=120 \
		SWITCHBOARD_LOAD_SWEEP_EVERY=10 \
		$(UV) run pytest --timeout 1800 tests/test_load.py

bench: setup
	$(UV) run python -m bench
