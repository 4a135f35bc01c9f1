#!/usr/bin/env bash
# Builds the Debian base image every paysys image starts from, with no image registry:
# debootstrap fetches Debian from its package mirror, `docker import` turns the tree into
# an image. An image already present is kept (building it again takes about a minute).
#
#   deploy/docker/base-image.sh [--force]     (the image: local/debian:bookworm)
#   DEBIAN_MIRROR (default http://deb.debian.org/debian)
set -euo pipefail

IMAGE=local/debian:bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm

case "${1:-}" in
  --force) docker image rm "$IMAGE" >/dev/null 2>&1 || true ;;
  "") ;;
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) echo "base-image.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
esac

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base image $IMAGE: present, kept"
  exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "base image: installing debootstrap"
  apt-get install -y -q debootstrap >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null; }
fi

rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/paysys-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
echo "base image $IMAGE: debootstrap $SUITE from $MIRROR"
debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 \
  || { tail -20 "$rootfs.log"; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"

# Security and point-release updates too, as Debian's own images have them.
cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${MIRROR%/debian}/debian-security $SUITE-security main
SOURCES
# Images never need the downloaded packages or the package lists of the bootstrap, nor
# documentation: dpkg leaves it out from now on, as Debian's own slim images do.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/paysys-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
DPKG
# No init system runs in a container: package scripts must not try to start services.
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*

tar -C "$rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
echo "base image $IMAGE: built ($(docker image inspect -f '{{.Size}}' "$IMAGE" | numfmt --to=si)B)"
