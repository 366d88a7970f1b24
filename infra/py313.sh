#!/usr/bin/env bash
# A real CPython 3.13, the Lambda function's runtime, for the handler's tests.
#
#   infra/py313.sh setup          Debian trixie's python3.13 in a debootstrap rootfs
#                                 (infra/.cache/trixie), plus the locked handler, cli and dev
#                                 dependencies installed for 3.13 (infra/.cache/py313-site)
#   infra/py313.sh run CMD...     CMD inside that rootfs, in the repository, as root
#                                 (PY313_BIND=DIR also mounts DIR, at the same path)
#
# The development venv is CPython 3.11 (the worker's livekit-agents stays there), and
# this machine has no other Python the project can rely on; Debian's packages are
# reachable, and trixie ships python3.13. The rootfs runs in its own mount namespace
# (unshare), so its bind mounts vanish with the process, and it shares the host's
# network: the tests' own servers, started inside it, listen on the same loopback.
# DynamoDB Local runs on trixie's OpenJDK 21; livekit-server and toxiproxy are the
# static Go binaries infra/fetch.sh built.
set -euo pipefail

SUITE=trixie
MIRROR=http://deb.debian.org/debian
# python3 makes /usr/bin/python3 the 3.13 that run.sh execs, as on Lambda.
PACKAGES=python3,python3.13,openjdk-21-jre-headless,ca-certificates
# What setup last installed; a different python3.13 is reported, not refused (Debian's
# archive keeps only the current stable point release of a package).
EXPECTED_PY313=3.13.5-2+deb13u5

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cache="$here/.cache"
rootfs="$cache/trixie"
site="$cache/py313-site"
# `uv run` sets UV to its own path, and python3 is then a venv's, without the uv module
# (and make hands recipes its own UV, "python3 -m uv"): an executable UV, else uv on PATH.
if [ -n "${UV:-}" ] && [ -x "${UV:-}" ]; then :; elif command -v uv >/dev/null; then UV="$(command -v uv)"; else UV="python3 -m uv"; fi

setup_rootfs() {
  if [ -f "$rootfs/.switchboard-packages" ] && [ "$(cat "$rootfs/.switchboard-packages")" = "$PACKAGES" ]; then
    return
  fi
  command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
  echo "py313: debootstrap $SUITE with $PACKAGES (about a minute the first time)"
  rm -rf "$rootfs.tmp"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs.tmp" "$MIRROR" >"$cache/trixie-debootstrap.log" 2>&1 \
    || { tail -20 "$cache/trixie-debootstrap.log"; echo "py313: debootstrap failed (log: $cache/trixie-debootstrap.log)" >&2; exit 1; }
  echo "$PACKAGES" >"$rootfs.tmp/.switchboard-packages"
  rm -rf "$rootfs"
  mv "$rootfs.tmp" "$rootfs"
}

setup_site() {
  # The same lock as the 3.11 venv, resolved for 3.13: the handler's runtime, the CLI and the dev group.
  local requirements="$cache/py313-requirements.txt"
  $UV export --quiet --frozen --extra handler --extra cli --no-emit-project --project "$root" -o "$requirements.new"
  if [ -d "$site" ] && [ -f "$requirements" ] && cmp -s "$requirements" "$requirements.new"; then
    rm -f "$requirements.new"
    return
  fi
  echo "py313: installing the locked dependencies for CPython 3.13 into $site"
  rm -rf "$site"
  $UV pip install --quiet --target "$site" --python-version 3.13 --python-platform x86_64-manylinux_2_28 \
    --only-binary :all: --no-deps --require-hashes -r "$requirements.new"
  mv "$requirements.new" "$requirements"
}

run() {
  [ -x "$rootfs/usr/bin/python3.13" ] || { echo "py313: no rootfs; run infra/py313.sh setup" >&2; exit 1; }
  local inner
  inner="$(printf '%q ' "$@")"
  # A private mount namespace: proc, dev and the repository are mounted for this command only.
  exec unshare --mount --propagation private -- /bin/bash -c '
    set -e
    rootfs="$1" root="$2" site="$3"; shift 3
    mount -t proc proc "$rootfs/proc"
    mount --rbind /dev "$rootfs/dev"
    mkdir -p "$rootfs$root" "$rootfs/tmp"
    mount --bind "$root" "$rootfs$root"
    # Whatever infra/.cache is here (a directory, or a link to another checkout'"'"'s), the same inside.
    # PY313_BIND: one more directory outside the repository, at the same path (a bundle being built).
    if [ -n "${PY313_BIND:-}" ]; then
      mkdir -p "$rootfs$PY313_BIND" && mount --bind "$PY313_BIND" "$rootfs$PY313_BIND"
    fi
    if [ -L "$root/infra/.cache" ]; then
      target="$(readlink -f "$root/infra/.cache")"
      mkdir -p "$rootfs$target" && mount --bind "$target" "$rootfs$target"
    fi
    exec chroot "$rootfs" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
      PYTHONPATH="$site:$root" PYTHONPYCACHEPREFIX=/var/cache/pycache ${SWITCHBOARD_TEST_PORT_OFFSET:+SWITCHBOARD_TEST_PORT_OFFSET=$SWITCHBOARD_TEST_PORT_OFFSET} \
      /bin/bash -c "cd \"$root\" && exec $0" 
  ' "$inner" "$rootfs" "$root" "$site"
}

case "${1:-}" in
  setup)
    mkdir -p "$cache"
    setup_rootfs
    setup_site
    version="$(chroot "$rootfs" dpkg-query -W -f '${Version}' python3.13)"
    [ "$version" = "$EXPECTED_PY313" ] || echo "py313: note: python3.13 is $version, not $EXPECTED_PY313 as last tested"
    ;;
  run)
    shift
    run "$@"
    ;;
  *)
    echo "usage: $0 setup | run CMD..." >&2
    exit 2
    ;;
esac
