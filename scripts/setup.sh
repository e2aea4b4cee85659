#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian/Ubuntu machine with Python 3.11:
# Debian packages (as root), then a virtual environment in .venv with the package and its deps.
#   bash scripts/setup.sh          # to run the service
#   bash scripts/setup.sh test     # plus the test tools (GStreamer RTSP server, ffmpeg, pytest, ruff) and the
#                                  # cluster extra with PostgreSQL and Redis, which the cluster tests run for real
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"

# Debian packages: scripts/apt-packages.txt is the one list (CI and the Dockerfiles read it too).
groups=(service venv)
if [ "$extra" = "test" ]; then groups+=(test); fi
bash scripts/apt-packages.sh install "${groups[@]}"

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned (pyproject) to the CPU build; CUDA machines get the GPU build from the Dockerfile.cuda.
if [ "$extra" = "test" ]; then
  # fast: the optional inference backends; cluster: Ray, psycopg, redis (cluster mode); both tested too
  .venv/bin/python -m pip install -q -e '.[test,fast,cluster]'
  # Ray ships a `serve` command of its own (Ray Serve's CLI); whichever package is installed last owns
  # .venv/bin/serve. Ours is reinstalled last so `serve` is this service's, also when Ray came later.
  .venv/bin/python -m pip install -q --no-deps --force-reinstall -e .
else
  .venv/bin/python -m pip install -q -e .
fi
