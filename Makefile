# Two commands on a fresh machine:
#   make dev    set up, then run the local stack (livekit-server, DynamoDB Local, handler)
#   make test   set up, then run every test against the real servers
SHELL := /bin/bash
UV_VERSION := 0.9.30
UV := python3 -m uv
SAM_VERSION := 1.170.0
SAM_DIR := infra/.cache/sam-$(SAM_VERSION)
SAM := $(SAM_DIR)/bin/sam

.PHONY: setup tools python fetch sam py313 dev demo lint test test-handlers test-py313 image image-warm image-test soak bench bench-lambda \
	bundle build-WebhookFunction build-SweeperFunction explore

setup: tools python fetch

# Command-line tools the project needs that are not Python packages, Debian's all in one
# apt-get (one dpkg lock), so the builds after it can run side by side:
#   espeak-ng        the workers' local voices
#   chromium         the dispatch-log page's browser test (Playwright's own download is not reachable)
#   podman ... fuse-overlayfs, debootstrap
#                    the worker image (infra/image.sh) and the CPython 3.13 rootfs (infra/py313.sh)
DEBIAN_PACKAGES := espeak-ng chromium podman buildah runc catatonit debootstrap uidmap netavark aardvark-dns fuse-overlayfs
tools:
	@python3 -m uv --version 2>/dev/null | grep -q "$(UV_VERSION)" || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	[ -z "$$missing" ] || { echo "tools: apt-get install" $$missing; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; }

python:
	$(UV) sync --frozen --all-extras

fetch:
	infra/fetch.sh

dev: setup
	$(UV) run python -m infra.dev

# With `make dev` running: a drill room, the dispatch log, both agents joining, who spoke when.
demo: setup
	$(UV) run python -m infra.demo

# ruff and mypy --strict on handler/, worker/ and infra/ (pyproject.toml: their settings).
# About 3 s of CPU with mypy's cache (.mypy_cache) warm, 33 s cold (a fresh clone: livekit-agents,
# openai, numpy... read once); tests/ and bench/ are not linted yet.
lint: python
	$(UV) run ruff check handler worker infra
	$(UV) run mypy

# The linters, then every test on the development venv (CPython 3.11), the worker image's included
# (tests/worker/test_worker_image.py runs `make image` first, so a machine that cannot build
# it fails that test with the reason), then the handler's tests again on CPython 3.13, the
# Lambda function's runtime. tests/test_bundle.py runs `sam build`.
#
# What the tests need is built first, side by side (-j): livekit-server's Go build is CPU,
# the rootfs, the image's stand-in base and the venvs are mostly downloads; the linters (make lint)
# run beside them once the venv is there, and a finding stops make test. The image is only
# warmed there: its test builds it again (cached, seconds) and fails with the build's own
# error if it cannot be built, so one broken build does not hide every other test's result.
#
# Then the suite in two parts (tests/handler_only.py sorts them). First what runs workers,
# real audio in real time, the SAM CLI and cfn-lint, alone: the machine is theirs. Then the
# handler's tests on 3.11 and on 3.13 side by side (test-handlers): neither part runs a
# worker, and one after the other they took 8 of the 30 minutes.
test: tools
	$(MAKE) --no-print-directory -j5 -O python lint fetch sam py313 image-warm
	$(UV) run pytest -p tests.handler_only --the-rest
	$(MAKE) --no-print-directory test-handlers

# The handler's tests on the venv's 3.11 and, on ports 1000 apart, on 3.13 (its report
# follows, from infra/.cache/test-py313.log). Fails if either does.
test-handlers: py313
	@SWITCHBOARD_TEST_PORT_OFFSET=1000 infra/py313.sh run python3 -m pytest $(HANDLER_TESTS) \
		>infra/.cache/test-py313.log 2>&1 & on313=$$!; \
	$(UV) run pytest $(HANDLER_TESTS); rc311=$$?; \
	wait $$on313; rc313=$$?; \
	echo "--- the handler's tests on CPython 3.13 (infra/.cache/test-py313.log)"; cat infra/.cache/test-py313.log; \
	[ $$rc311 -eq 0 ] && [ $$rc313 -eq 0 ]
HANDLER_TESTS = -p tests.handler_only --ignore=tests/worker tests

# The handler's tests on Debian trixie's CPython 3.13 (infra/py313.sh): all but those needing a
# livekit-agents worker (the worker stays on 3.11), cfn-lint's CLI or the SAM CLI (test_bundle.py
# runs 3.13 on the bundle itself); tests/handler_only.py names them.
test-py313: py313
	infra/py313.sh run python3 -m pytest $(HANDLER_TESTS)

# The AWS SAM CLI in a venv of its own, its closure pinned and hashed: its pins are not the project's.
sam: $(SAM)
$(SAM): infra/sam-requirements.txt
	rm -rf $(SAM_DIR)
	$(UV) venv -q --python 3.11 $(SAM_DIR)
	$(UV) pip install -q --python $(SAM_DIR)/bin/python --require-hashes -r infra/sam-requirements.txt
	touch $@

py313:
	infra/py313.sh setup

# The Lambda bundle, as a deploy builds it: .aws-sam/build/, then `sam deploy`.
bundle: sam
	$(SAM) build

# `sam build` runs these (template.yaml: BuildMethod makefile) from the repository root, ARTIFACTS_DIR set.
build-WebhookFunction build-SweeperFunction:
	infra/bundle.sh "$(ARTIFACTS_DIR)"

# The worker image (worker/Dockerfile) with Debian's podman, from stand-in base images made here
# where the public ones cannot be pulled; cached in infra/.cache/images. See infra/image.sh.
image:
	infra/image.sh

image-warm:
	@mkdir -p infra/.cache; infra/image.sh >infra/.cache/image-warm.log 2>&1 && echo "image: built (infra/.cache/image-warm.log)" \
	  || echo "image: not built here (infra/.cache/image-warm.log); tests/worker/test_worker_image.py says why"

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

# Cold start of the Lambda bundle on CPython 3.13 (an x86_64 twin of it): BENCHMARKS.md, section 3.
bench-lambda: py313
	infra/bundle.sh infra/.cache/bench-lambda/unchecked-hash x86_64-manylinux_2_34
	infra/py313.sh run python3 -m bench.lambda_coldstart $(BENCH_ARGS)
