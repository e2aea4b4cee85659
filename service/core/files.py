"""Files a crash must never leave half-written (results, alert pictures): written beside, then renamed."""

from __future__ import annotations

from pathlib import Path

TMP_SUFFIX = ".tmp"  # start-up recovery removes files ending so (a crash between write and rename)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write `data` to `path` so a reader sees the old file or the whole new one, never part of it."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    if isinstance(data, str):
        tmp.write_text(data)
    else:
        tmp.write_bytes(data)
    tmp.replace(path)
