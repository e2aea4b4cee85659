#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian/Ubuntu machine with Python 3.11:
# Debian packages (as root), then a virtual environment in .venv with the package and its deps.
#   bash scripts/setup.sh          # to run the service
#   bash scripts/setup.sh test     # plus the test tools (GStreamer RTSP server, ffmpeg, pytest, ruff)
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"

apt_packages=(python3-venv libgl1 libglib2.0-0)
if [ "$extra" = "test" ]; then
  apt_packages+=($(grep -v '^#' scripts/apt-test.txt))
fi
missing=()
for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned (pyproject) to the CPU build; CUDA machines get the GPU build from the Dockerfile.cuda.
if [ "$extra" = "test" ]; then
  .venv/bin/python -m pip install -q -e '.[test,fast]'  # fast: the optional inference backends, tested too
else
  .venv/bin/python -m pip install -q -e .
fi
