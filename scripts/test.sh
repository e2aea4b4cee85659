#!/usr/bin/env bash
# Sets up (Debian packages, .venv) and runs the whole test suite: lint, then pytest.
# Ped2 is expected at ../shared/datasets/ped2 (or $MNAD_PED2); tests that need it skip without it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/ruff check model service tests bench scripts
.venv/bin/ruff format --check model service tests bench scripts
.venv/bin/python -m pytest -ra "$@"
