"""What every bench records beside its numbers (the machine, torch, threads and commit, a plain table), and
starting `serve` for the service benches."""

from __future__ import annotations

import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512_vnni", "avx512f", "avx2")))


def commit() -> str | None:
    """HEAD (+dirty), or None where there is no git or no repository (a copy of the work tree on a GPU box)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True)
    except OSError:
        return None
    return (out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")) if out.returncode == 0 else None


def machine() -> dict:
    """The context a number needs to be compared: same fields in every bench's JSON."""
    info = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "commit": commit(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "loadavg_1m": os.getloadavg()[0],  # > ~0.3 before a run: something else was using the CPU
    }
    for package in ("openvino", "onnxruntime"):
        try:
            info[package] = __import__(package).__version__
        except ImportError:
            info[package] = None
    return info


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of `rows` (dicts) in `columns` order: printed, and pasted into docs/benchmarks.md."""
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |"]
    lines.append("| " + " | ".join("-" * w for w in widths) + " |")
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |" for row in cells]
    return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def write_json(path: Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")


def _busy_seconds() -> float:
    """Machine-wide busy CPU time (all cores, user + nice + system + irq), in seconds."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class ForeignLoad:
    """CPU used by other processes while a bench ran (cores on average): a number taken beside another
    job is not a number. Everything this process and its children use counts as its own."""

    def __init__(self) -> None:
        self.wall, self.busy, self.own = time.monotonic(), _busy_seconds(), self._own()

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def cores(self, extra_own_s: float = 0.0) -> float:
        """Average cores used by others since creation; `extra_own_s`: CPU of helpers not waited for."""
        wall = time.monotonic() - self.wall
        foreign = (_busy_seconds() - self.busy) - (self._own() - self.own) - extra_own_s
        return round(max(0.0, foreign) / wall, 2) if wall > 0 else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, proc: subprocess.Popen, timeout_s: float, log: Path | None = None) -> None:
    """Until serve's /readyz answers 200; exits the bench if serve dies or the timeout passes."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            sys.exit("serve did not become ready" + (f": {log.read_text()[-2000:]}" if log else ""))
        time.sleep(0.5)


def start_rtsp_camera(clip: Path, port: int) -> subprocess.Popen:
    """tests/service/rtsp_server.py (Debian's python3 with python3-gi) serving `clip` at /clip, once it is ready."""
    proc = subprocess.Popen(
        ["/usr/bin/python3", str(REPO / "tests/service/rtsp_server.py"), "--port", str(port), str(clip)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    if proc.stdout.readline().strip() != "ready":
        sys.exit(f"RTSP server did not start: {proc.stderr.read()[-1000:]}")
    return proc
