#!/usr/bin/env bash
# The Lambda bundle: what `sam build` ships for the webhook and the sweeper functions.
#
#   infra/bundle.sh ARTIFACTS_DIR [PLATFORM]
#
# `sam build` runs it through the Makefile's build-WebhookFunction/build-SweeperFunction
# targets (BuildMethod: makefile), from the repository root, with ARTIFACTS_DIR set.
# PLATFORM is a uv --python-platform; the function is arm64 on Amazon Linux 2023
# (glibc 2.34), hence aarch64-manylinux_2_34 by default.
#
# What goes in, and nothing else:
#   - the locked runtime closure: base dependencies plus the `handler` extra from uv.lock
#     (no dev group, no cli or worker extra), wheels only, hashes checked;
#   - the handler package (its .py files and run.sh, the Handler the adapter execs);
#   - infra/routing.yaml, the example routing profiles (RoutingFile=infra/routing.yaml).
# Then bytecode for every .py, compiled by CPython 3.13 (the runtime's own version) with
# --invalidation-mode unchecked-hash. Lambda's /var/task is read-only and SAM's zip dates
# every entry 1980-01-01, so a timestamp .pyc never matches its source there and every
# cold start would compile all ~560 modules again; an unchecked-hash .pyc is used as is.
set -euo pipefail

artifacts="${1:?usage: infra/bundle.sh ARTIFACTS_DIR [PLATFORM]}"
platform="${2:-aarch64-manylinux_2_34}"
RUNTIME_VERSION=3.13
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
# `uv run` sets UV to its own path, and python3 is then a venv's, without the uv module
# (and make hands recipes its own UV, "python3 -m uv"): an executable UV, else uv on PATH.
if [ -n "${UV:-}" ] && [ -x "${UV:-}" ]; then :; elif command -v uv >/dev/null; then UV="$(command -v uv)"; else UV="python3 -m uv"; fi

mkdir -p "$artifacts"
artifacts="$(cd "$artifacts" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A bundle is rebuilt whole: nothing of an earlier build may linger in it.
find "$artifacts" -mindepth 1 -delete

$UV export --quiet --frozen --no-dev --extra handler --no-emit-project --project "$root" -o "$work/requirements.txt"
$UV pip install --quiet --target "$artifacts" --python-version "$RUNTIME_VERSION" --python-platform "$platform" \
  --only-binary :all: --no-deps --require-hashes --no-compile -r "$work/requirements.txt"
# Console scripts (their shebangs name this machine's interpreter); the function runs none.
rm -rf "$artifacts/bin"
# uv's lock file for the target directory.
rm -f "$artifacts/.lock"
# Type stubs (PEP 561 *-stubs packages, here types-protobuf's) are never imported.
find "$artifacts" -maxdepth 1 -type d -name '*-stubs' -exec rm -rf {} +
# botocore ships every AWS service's model (~19 MB of its 23); the function builds clients for
# these two only. Anything else asked of botocore fails loudly with UnknownServiceError.
BOTOCORE_SERVICES="dynamodb secretsmanager"
for service in "$artifacts"/botocore/data/*/; do
  name="$(basename "$service")"
  [[ " $BOTOCORE_SERVICES " == *" $name "* ]] || rm -rf "$service"
done

mkdir -p "$artifacts/handler" "$artifacts/infra"
cp "$root"/handler/*.py "$root/handler/run.sh" "$artifacts/handler/"
cp "$root/infra/routing.yaml" "$artifacts/infra/"

# The runtime's interpreter compiles: a .pyc is only valid for the Python version that wrote it.
# -s/-p record /var/task paths in the code objects, so tracebacks name the deployed files.
# -I: no PYTHONPYCACHEPREFIX or other environment may send the .pyc files elsewhere.
compile=(-I -m compileall -q -j 0 --invalidation-mode unchecked-hash -s "$artifacts" -p /var/task "$artifacts")
if [ -n "${PYTHON313:-}" ]; then
  "$PYTHON313" "${compile[@]}" >"$work/compile.log" || { cat "$work/compile.log"; exit 1; }
elif python3.13 -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
  python3.13 "${compile[@]}" >"$work/compile.log" || { cat "$work/compile.log"; exit 1; }
else
  "$here/py313.sh" setup >&2
  PY313_BIND="$artifacts" "$here/py313.sh" run python3.13 "${compile[@]}" >"$work/compile.log" \
    || { cat "$work/compile.log"; exit 1; }
fi

echo "bundle: $(du -sh --apparent-size "$artifacts" | cut -f1) in $(find "$artifacts" -type f | wc -l) files, $platform, CPython $RUNTIME_VERSION bytecode: $artifacts" >&2
