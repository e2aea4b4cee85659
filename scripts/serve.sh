#!/usr/bin/env bash
# Sets up (Debian packages, .venv) and starts the service on its defaults: the shipped Ped2
# weights, SQLite under ./data, http://127.0.0.1:8000. Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/serve "$@"
