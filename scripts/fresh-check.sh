#!/usr/bin/env bash
# Proves that the README's test command installs everything it needs: a fresh Debian 12 (bookworm)
# root filesystem with nothing but python3.11, a fresh clone of this repository's HEAD in it, and
# `bash scripts/test.sh` run there (with CI's MNAD_NO_SKIPS=1, so a missing tool fails, never skips).
#   sudo bash scripts/fresh-check.sh [pytest args]     # ~20-30 min on 2 cores; .ci/run runs it
# Only the machine's package sources come in from outside, read-only: apt's mirror over the network,
# pip's config and local wheel stores (/opt/wheels, /opt/pypi, /opt/pypi-more, /etc/pip.conf,
# /etc/xdg/pip, ~/.config/pip), its CA bundle, DNS; and ../shared (Ped2).
# Environment:
#   FRESH_CACHE    where the pristine debootstrap tree is kept between runs (default /var/cache/mnad-fresh-check);
#                  each run works on a copy of it, so no run sees another's installs
#   FRESH_MIRROR   Debian mirror (default http://deb.debian.org/debian)
#   FRESH_TIMEOUT  seconds before the run is stopped and fails (default 2700: CI's budget is 90 min)
#   FRESH_KEEP=1   keep the used root filesystem for a look (it is deleted otherwise)
set -euo pipefail

if [ "${1:-}" = "--inside" ]; then
  # Second half, run by the first under unshare: a private mount namespace and PID namespace, so
  # every mount below and every process started in the chroot ends with it, whatever happens.
  root="$2"
  shift 2
  rbind() { mkdir -p "$root$2" && mount --rbind "$1" "$root$2" && mount --make-rslave "$root$2"; }
  ro_bind() {  # a file or folder of the machine, read-only at the same path inside
    [ -e "$1" ] || return 0
    if [ -d "$1" ]; then mkdir -p "$root$1"; else mkdir -p "$(dirname "$root$1")" && touch "$root$1"; fi
    mount --bind "$1" "$root$1" && mount -o remount,bind,ro "$root$1"
  }
  mount -t proc proc "$root/proc"
  rbind /sys /sys
  rbind /dev /dev  # with /dev/shm, which chromium needs
  for path in /opt/wheels /opt/pypi /opt/pypi-more /etc/pip.conf /etc/xdg/pip /root/.config/pip; do
    ro_bind "$path"
  done
  shared="$(cd "$(dirname "$0")/../.." && pwd)/shared"
  if [ -d "$shared" ]; then
    mkdir -p "$root/src/shared" && mount --bind "$shared" "$root/src/shared" && mount -o remount,bind,ro "$root/src/shared"
  else
    echo "fresh-check: no $shared (Ped2): the tests that need it will fail under MNAD_NO_SKIPS" >&2
  fi
  # A clean environment: only the locale, CI's flags and pip's settings (its package sources) pass.
  env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
    CI="${CI:-}" MNAD_NO_SKIPS=1)
  while IFS='=' read -r name _; do
    case "$name" in PIP_CERT) ;; PIP_*) env+=("$name=${!name}") ;; esac
  done < <(env)
  if [ -f "$root/etc/ssl/host-ca.crt" ]; then
    env+=(PIP_CERT=/etc/ssl/host-ca.crt SSL_CERT_FILE=/etc/ssl/host-ca.crt REQUESTS_CA_BUNDLE=/etc/ssl/host-ca.crt)
  fi
  exec chroot "$root" /usr/bin/env -i "${env[@]}" \
    bash -c 'cd /src/main && exec bash scripts/test.sh "$@"' fresh-check "$@"
fi

repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${FRESH_CACHE:-/var/cache/mnad-fresh-check}"
mirror="${FRESH_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm
if [ "$(id -u)" -ne 0 ]; then
  echo "fresh-check: needs root (debootstrap, mount, chroot)" >&2
  exit 1
fi
bash "$repo/scripts/apt-packages.sh" install check  # debootstrap, from the project's one list
mkdir -p "$cache"
base="$cache/base-$suite"
run="$cache/run"

# The pristine tree: minbase (apt, dpkg, coreutils) plus python3.11, the README's one prerequisite.
# Built once into a temporary folder and renamed, so a half-made tree is never reused; rebuilt
# after a week so that it does not fall behind Debian's point releases.
if [ -f "$base/.made" ] && [ -z "$(find "$base/.made" -mtime +7)" ]; then
  echo "fresh-check: reusing the pristine $suite tree from $(cat "$base/.made")"
else
  rm -rf --one-file-system "$base" "$base.tmp"
  echo "fresh-check: debootstrap $suite (minbase + python3.11) from $mirror"
  debootstrap --variant=minbase --include=python3.11 "$suite" "$base.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
    tail -30 "$cache/debootstrap.log" >&2
    echo "fresh-check: FAILED: debootstrap (log: $cache/debootstrap.log)" >&2
    exit 1
  }
  date -u +%Y-%m-%dT%H:%MZ >"$base.tmp/.made"
  mv "$base.tmp" "$base"
fi

cleanup() {
  local status=$?
  # The namespace took its mounts along; this checks, and never deletes through a live mount.
  if findmnt -rn -o TARGET | grep -q "^$run\(/\|$\)"; then
    findmnt -rn -o TARGET | grep "^$run\(/\|$\)" | sort -r | xargs -r -n1 umount -l || true
  fi
  if findmnt -rn -o TARGET | grep -q "^$run\(/\|$\)"; then
    echo "fresh-check: mounts left under $run; not deleting it" >&2
    status=1
  elif [ "${FRESH_KEEP:-0}" = 1 ]; then
    echo "fresh-check: kept $run"
  else
    rm -rf --one-file-system "$run"
  fi
  if [ "$status" -eq 0 ]; then echo "fresh-check: PASSED"; else echo "fresh-check: FAILED (exit $status)" >&2; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf --one-file-system "$run"
cp -a "$base" "$run"
# What a new machine has beside the OS: Debian's full sources, DNS, hosts, and the machine's CA bundle
# (kept apart from Debian's, which its ca-certificates package may write over).
cat >"$run/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $suite-security main
EOF
cp /etc/resolv.conf "$run/etc/resolv.conf"
cp /etc/hosts "$run/etc/hosts"  # localhost: debootstrap writes no /etc/hosts, every installed machine has one
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$run/etc/ssl" && cp /etc/ssl/certs/ca-certificates.crt "$run/etc/ssl/host-ca.crt"
fi
# Packages must not start daemons (prometheus has one) inside a chroot: the usual chroot rule.
printf '#!/bin/sh\nexit 101\n' >"$run/usr/sbin/policy-rc.d"
chmod +x "$run/usr/sbin/policy-rc.d"
# A fresh clone of what is committed, as CI gets it: uncommitted changes are not tested.
git clone -q --no-local "$repo" "$run/src/main"
echo "fresh-check: testing $(git -C "$run/src/main" log -1 --format='%h %s' | cut -c1-100)"

timeout --kill-after=60 "${FRESH_TIMEOUT:-2700}" \
  unshare --mount --pid --fork --kill-child --propagation private bash "$repo/scripts/fresh-check.sh" --inside "$run" "$@"
