#!/usr/bin/env bash
# Reads scripts/apt-packages.txt, the project's one list of Debian packages (setup.sh, CI, Dockerfiles).
#   bash scripts/apt-packages.sh list GROUP...      # the packages of these groups, one a line
#   bash scripts/apt-packages.sh install GROUP...   # apt-get install those not installed yet (root, or sudo)
# Groups: service, venv, python, test (see the list). An unknown group is an error, so a typo
# cannot quietly install nothing.
set -euo pipefail
list_file="$(dirname "$0")/apt-packages.txt"
action="${1:-}"
shift || true
if [ "$action" != list ] && [ "$action" != install ] || [ $# -eq 0 ]; then
  echo "usage: $0 list|install GROUP..." >&2
  exit 2
fi

packages=()
for group in "$@"; do
  # Drop comments, then print the first word of each line whose later words name the group.
  found=$(awk -v g="$group" '{ sub(/#.*/, "") } NF { for (i = 2; i <= NF; i++) if ($i == g) print $1 }' "$list_file")
  if [ -z "$found" ]; then
    echo "$0: no package in group '$group' of $list_file" >&2
    exit 2
  fi
  while read -r p; do packages+=("$p"); done <<<"$found"
done

if [ "$action" = list ]; then
  printf '%s\n' "${packages[@]}" | sort -u
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  # "install ok installed", not just known to dpkg: a removed package leaves its config behind.
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
