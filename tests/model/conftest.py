"""Fixtures the model tests share."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def held_out(ped2: Path, tmp_path: Path) -> list[Path]:
    """The first 40 frames of Ped2's held-out training clips 15 and 16 (synthetic events need 28)."""
    clips = []
    for name in ("15", "16"):
        folder = tmp_path / name
        folder.mkdir()
        for f in sorted((ped2 / "training" / "frames" / name).glob("*.jpg"))[:40]:
            (folder / f.name).symlink_to(f)
        clips.append(folder)
    return clips
