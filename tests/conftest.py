"""Shared fixtures: where Ped2 lives (MNAD_PED2, default ../shared/datasets/ped2 beside the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PED2 = Path(os.environ.get("MNAD_PED2", REPO.parent / "shared" / "datasets" / "ped2"))


@pytest.fixture(scope="session")
def ped2() -> Path:
    """The Ped2 dataset root; tests that need it skip (with where to put it) when it is absent."""
    if not (PED2 / "testing" / "frames").is_dir() or not (PED2 / "frame_labels_ped2.npy").is_file():
        pytest.skip(
            f"UCSD Ped2 not found at {PED2}: put it there (training/, testing/, frame_labels_ped2.npy) "
            "or set MNAD_PED2 to its folder"
        )
    return PED2


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Under MNAD_NO_SKIPS=1 (set by .ci/run) a skip is a failure: CI has every tool and Ped2, so a
    skip there means a missing install step, not a machine that legitimately lacks something."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("MNAD_NO_SKIPS") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, but MNAD_NO_SKIPS=1 forbids skips: {report.longrepr}"
