# Two commands on a fresh machine:
#   make dev    set up, then run the local stack (livekit-server, DynamoDB Local, handler)
#   make test   set up, then run every test against the real servers
SHELL := /bin/bash
UV_VERSION := 0.9.30
UV := python3 -m uv

.PHONY: setup tools python fetch dev demo test image image-test soak bench explore

setup: tools python fetch

# Command-line tools the project needs that are not Python packages.
tools:
	@python3 -m uv --version 2>/dev/null | grep -q "$(UV_VERSION)" || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	@command -v espeak-ng >/dev/null || { apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null; }
	@# The dispatch-log page's browser test drives Debian's chromium (Playwright's own download is not reachable).
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

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

# The schedule explorer at length (tests/test_explorer.py): SCHEDULES seeds from FIRST_SEED,
# split over two processes (one per core). `make test` runs a few dozen of them.
SCHEDULES ?= 10000
FIRST_SEED ?= 1
explore: setup
	@half=$$(( $(SCHEDULES) / 2 )); \
	SWITCHBOARD_EXPLORE_FIRST_SEED=$(FIRST_SEED) SWITCHBOARD_EXPLORE_SCHEDULES=$$half \
		$(UV) run pytest -q --timeout 0 -p no:cacheprovider tests/test_explorer.py -k keep_every & first=$$!; \
	SWITCHBOARD_EXPLORE_FIRST_SEED=$$(( $(FIRST_SEED) + half )) SWITCHBOARD_EXPLORE_SCHEDULES=$$(( $(SCHEDULES) - half )) \
		$(UV) run pytest -q --timeout 0 -p no:cacheprovider tests/test_explorer.py -k keep_every; second=$$?; \
	wait $$first && [ $$second = 0 ]

bench: setup
	$(UV) run python -m bench
