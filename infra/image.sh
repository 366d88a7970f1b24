#!/usr/bin/env bash
# make image: the worker image from worker/Dockerfile, built with Debian's podman (no Docker engine).
#
# The Dockerfile's two base images are pulled when they can be. Where they cannot (this
# machine reaches Debian's packages and PyPI, not container registries) the project makes
# its own stand-ins, cached in infra/.cache/images (ignored by git):
#   python:3.11.x-slim-bookworm  ->  a debootstrap'd Debian bookworm (minbase) with Debian's
#                                    python3 (CPython 3.11.2); the pin it stands in for is
#                                    recorded beside it (python-standin.pin)
#   ghcr.io/astral-sh/uv:X       ->  the same uv release from PyPI (the pinned uv wheel's binary)
# Everything else is the Dockerfile's own, unchanged.
#
# What this machine needs, and CI will too: podman/buildah/runc/catatonit from Debian,
# debootstrap, infra/containers.conf (runc, which the issue's trial found working where crun
# did not with this kernel's hybrid cgroups; no default ulimits, since raising RLIMIT_NOFILE
# needs CAP_SYS_RESOURCE, which this machine lacks), and the host's CA bundle mounted into the
# build (uv reaches PyPI through a TLS-inspecting proxy here).
#
#   infra/image.sh                 build localhost/switchboard-worker:dev (override: SWITCHBOARD_WORKER_IMAGE)
#   infra/image.sh --print-image   print that name
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cache="$here/.cache/images"
dockerfile="$root/worker/Dockerfile"
image="${SWITCHBOARD_WORKER_IMAGE:-localhost/switchboard-worker:dev}"
export CONTAINERS_CONF="$here/containers.conf"

if [ "${1:-}" = "--print-image" ]; then
  echo "$image"
  exit 0
fi

DEBIAN_RELEASE=bookworm
DEBIAN_MIRROR=http://deb.debian.org/debian
# The pins, read from the Dockerfile so there is one place to bump them.
python_pin="$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$dockerfile")"
uv_pin="$(sed -n 's/^ARG UV_IMAGE=//p' "$dockerfile")"
uv_version="${uv_pin##*:}"
# Bump when the stand-in's recipe changes: its cached rootfs and image are keyed on it.
STANDIN_REVISION=2
standin_python="localhost/switchboard-standin/python:3.11-$DEBIAN_RELEASE-r$STANDIN_REVISION"
standin_uv="localhost/switchboard-standin/uv:$uv_version"

log() { echo "image: $*" >&2; }

need_tools() {
  local missing=()
  for tool in podman buildah runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ -x /usr/libexec/podman/catatonit ] || missing+=(catatonit)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      podman buildah runc catatonit debootstrap uidmap netavark aardvark-dns fuse-overlayfs >/dev/null
  fi
}

# Pull an image if its registry is reachable; quiet, and bounded when it is not.
can_pull() { podman image exists "$1" || timeout 120 podman pull -q "$1" >/dev/null 2>&1; }

python_standin() {
  podman image exists "$standin_python" && return
  local tar="$cache/python-standin-$DEBIAN_RELEASE-r$STANDIN_REVISION.tar" pin="$cache/python-standin.pin"
  if [ ! -f "$tar" ]; then
    log "debootstrap $DEBIAN_RELEASE (minbase + python3), standing in for $python_pin"
    local rootfs="$cache/rootfs.tmp"
    rm -rf "$rootfs"
    mkdir -p "$cache"
    # The packages python:slim carries that the worker uses: CA certificates, netbase, tzdata.
    debootstrap --variant=minbase --include=python3,ca-certificates,netbase,tzdata \
      "$DEBIAN_RELEASE" "$rootfs" "$DEBIAN_MIRROR" >"$cache/debootstrap.log" 2>&1 \
      || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
    # Apt sources as Debian's own images have them (point, updates and security releases).
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $DEBIAN_RELEASE $DEBIAN_RELEASE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $DEBIAN_RELEASE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # `python` as python:slim has it.
    ln -sf python3 "${rootfs:?}/usr/bin/python"
    # Debian's container images keep apt's caches out of every layer, and their slim variant
    # keeps dpkg from installing docs and locales: the stand-in does the same, so the
    # Dockerfile's `apt-get install` weighs here what it weighs on the real base.
    printf '%s\n' \
      'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
      'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
      'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' >"${rootfs:?}/etc/apt/apt.conf.d/docker-clean"
    printf '%s\n' 'Acquire::Languages "none";' >"${rootfs:?}/etc/apt/apt.conf.d/docker-no-languages"
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
      'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
      'path-exclude /usr/share/lintian/*' >"${rootfs:?}/etc/dpkg/dpkg.cfg.d/docker"
    # ...and what debootstrap already installed goes the same way: no caches, lists, docs, locales.
    rm -rf "${rootfs:?}"/var/cache/apt/*.bin "${rootfs:?}"/var/cache/apt/archives/*.deb \
      "${rootfs:?}"/var/lib/apt/lists/* "${rootfs:?}"/usr/share/man/* "${rootfs:?}"/usr/share/info/* \
      "${rootfs:?}"/usr/share/lintian/*
    find "${rootfs:?}/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "${rootfs:?}/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    local version
    version="$(chroot "$rootfs" python3 -c 'import platform; print(platform.python_version())')"
    tar -C "$rootfs" --numeric-owner -cf "$tar.tmp" .
    mv "$tar.tmp" "$tar"
    rm -rf "$rootfs"
    printf 'stands in for: %s\nbuilt: %s, debootstrap --variant=minbase %s from %s\npython: CPython %s (Debian python3)\n' \
      "$python_pin" "$(date -u +%FT%TZ)" "$DEBIAN_RELEASE" "$DEBIAN_MIRROR" "$version" >"$pin"
  fi
  log "importing the stand-in base: $(head -1 "$cache/python-standin.pin")"
  podman import -q --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' "$tar" "$standin_python" >/dev/null
}

uv_standin() {
  podman image exists "$standin_uv" && return
  log "uv $uv_version from PyPI, standing in for $uv_pin"
  local dir="$cache/uv-$uv_version"
  if [ ! -x "$dir/uv" ]; then
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$dir.tmp" "uv==$uv_version"
    python3 -m zipfile -e "$dir.tmp"/uv-*.whl "$dir.tmp/wheel"
    mkdir -p "$dir.tmp/root"
    install -m 0755 "$dir.tmp"/wheel/uv-*.data/scripts/uv "$dir.tmp"/wheel/uv-*.data/scripts/uvx "$dir.tmp/root/"
    mv "$dir.tmp/root" "$dir"
    rm -rf "$dir.tmp"
  fi
  tar -C "$dir" -c uv uvx | podman import -q - "$standin_uv" >/dev/null
}

main() {
  need_tools
  local python_base="$python_pin" uv_base="$uv_pin"
  if ! can_pull "$python_pin"; then python_standin; python_base="$standin_python"; fi
  if ! can_pull "$uv_pin"; then uv_standin; uv_base="$standin_uv"; fi
  log "building $image from $python_base and $uv_base"
  local previous
  previous="$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
  local ca=()
  # The host's CA bundle over the build's, so uv (UV_NATIVE_TLS) trusts what the host trusts.
  [ -f /etc/ssl/certs/ca-certificates.crt ] && ca=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
  # --network host: the build's RUN steps reach Debian and PyPI as the host does (no bridge to set up).
  podman build --format docker --pull=never --network host \
    --ignorefile "$root/worker/Dockerfile.dockerignore" -f "$dockerfile" \
    --build-arg "PYTHON_IMAGE=$python_base" --build-arg "UV_IMAGE=$uv_base" \
    "${ca[@]}" --label "switchboard.base=$python_base" -t "$image" "$root"
  # The image this one replaces is nobody's cache (its build stage, kept, is): remove it, or
  # every change to worker/ leaves another 600 MB behind.
  if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$image")" ]; then
    podman rmi "$previous" >/dev/null 2>&1 || true
  fi
  podman image inspect --format 'image: {{.RepoTags}} {{.Size}} bytes' "$image"
}

main "$@"
