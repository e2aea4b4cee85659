"""Chaos soak: N RTSP cameras and a stream of uploads into one `serve`, while cameras restart at random,
`serve` is killed with SIGKILL at random moments and started again on the same data directory, and
WebSocket clients flood the stream feeds. After every restart (and at the end) it checks the invariants:

- no clip stuck (queued/running from before the restart), no alert stuck open, no orphan file
  (partial upload, files of no clip, pictures of no alert);
- SQLite `PRAGMA integrity_check` is ok;
- every alert a WebSocket client saw (alert_open/alert_close on /ws/alerts) is in the database;
- RSS growth of each server lifetime after its warm-up within --rss-growth (5 %), and the uploads folder
  within the quota.

    python bench/soak.py                                   # 30 min, 4 cameras, a kill -9 every 2-5 min
    python bench/soak.py --seconds 90 --cameras 1 --kill-every 25 35 --models-dir DIR   # short (see tests)

Cameras are tests/service/rtsp_server.py (Debian's python3 with python3-gi) serving Ped2 test clip 02
(walkers, then a cyclist); uploads are Ped2 test clip 01 (FFV1). Writes --out (JSON) and exits 1 when any
invariant failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
from common import REPO, free_port, machine, wait_ready, write_json
from websockets.sync.client import connect

PAGE = os.sysconf("SC_PAGE_SIZE")


def ped2_frames(ped2: Path, clip: str) -> np.ndarray:
    files = sorted((ped2 / "testing" / "frames" / clip).glob("*.jpg"))
    return np.stack([cv2.imread(str(f)) for f in files])


def encode_h264(frames: np.ndarray, path: Path, fps: int = 10) -> Path:
    """H.264 4:2:0 without B-frames, one slice per frame: what the RTSP server streams (as bench/service_rtsp)."""
    h, w = frames.shape[1:3]
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
           "-pix_fmt", "yuv420p", "-g", str(fps), "-bf", "0", str(path)]  # fmt: skip
    subprocess.run(cmd, input=frames.tobytes(), check=True, timeout=300)
    return path


def encode_ffv1(frames: np.ndarray, path: Path, fps: int = 10) -> Path:
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


class Camera:
    def __init__(self, clip: Path) -> None:
        self.clip, self.port = clip, free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/clip"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", str(REPO / "tests/service/rtsp_server.py"), "--port", str(self.port), str(self.clip)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        if self.proc.stdout.readline().strip() != "ready":
            sys.exit(f"RTSP server did not start: {self.proc.stderr.read()[-1000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def folder_bytes(folder: Path) -> int:
    total = 0
    for p in folder.glob("*"):
        with contextlib.suppress(OSError):  # deleted meanwhile
            total += p.stat().st_size
    return total


class AlertWatcher(threading.Thread):
    """Subscribes to /ws/alerts for the whole run (again after every restart) and records the alert ids seen."""

    def __init__(self, ws_base: str) -> None:
        super().__init__(daemon=True)
        self.url, self.seen, self.stop = f"{ws_base}/ws/alerts", set(), threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with connect(self.url, open_timeout=5) as ws:
                    while not self.stop.is_set():
                        try:
                            m = json.loads(ws.recv(timeout=1))
                        except TimeoutError:
                            continue
                        if m.get("type", "").startswith("alert_") and m.get("id") is not None:
                            self.seen.add(int(m["id"]))
            except Exception:  # server killed or restarting: try again
                time.sleep(0.5)


class Flood(threading.Thread):
    """A WebSocket subscriber to a stream that reads slowly (its queue overflows), reconnecting when cut."""

    def __init__(self, ws_base: str, client: httpx.Client, delay: float) -> None:
        super().__init__(daemon=True)
        self.ws_base, self.client, self.delay, self.stop = ws_base, client, delay, threading.Event()
        self.received = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                streams = self.client.get("/api/streams", timeout=5).json()
                sid = random.choice(streams)["id"]
                with connect(f"{self.ws_base}/ws/streams/{sid}", open_timeout=5, max_queue=4) as ws:
                    while not self.stop.is_set():
                        ws.recv(timeout=10)
                        self.received += 1
                        time.sleep(self.delay)
            except Exception:
                time.sleep(0.5)


def check(data: Path, seen: set[int], since: float, quota: int) -> list[str]:
    """The invariants after a restart (`since`: when the server that was killed had started)."""
    problems = []
    db = sqlite3.connect(f"file:{data / 'service.sqlite3'}?mode=ro", uri=True)
    try:
        if (ok := db.execute("PRAGMA integrity_check").fetchone()[0]) != "ok":
            problems.append(f"integrity_check: {ok}")
        stuck = db.execute("SELECT id FROM clips WHERE status IN ('queued', 'running') AND created < ?", (since,))
        problems += [f"clip {r[0]} stuck" for r in stuck.fetchall()]
        open_ = db.execute("SELECT id FROM alerts WHERE end_time IS NULL AND start_time < ?", (since,)).fetchall()
        problems += [f"alert {r[0]} stuck open" for r in open_]
        clips = {r[0] for r in db.execute("SELECT id FROM clips")}
        alerts = {r[0] for r in db.execute("SELECT id FROM alerts")}
    finally:
        db.close()
    for p in (data / "clips").glob("*"):
        if p.name.endswith(".upload") or p.name.split(".", 1)[0] not in clips:
            problems.append(f"orphan file clips/{p.name}")
    for p in (data / "alerts").glob("*"):
        stem = p.name.split(".", 1)[0]
        if not stem.isdigit() or int(stem) not in alerts:
            problems.append(f"orphan picture alerts/{p.name}")
    problems += [f"alert {a} seen on a WebSocket, not in the database" for a in sorted(seen - alerts)]
    if (used := folder_bytes(data / "clips")) > quota:
        problems.append(f"uploads use {used} bytes, over the quota of {quota}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1800)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--kill-every", type=float, nargs=2, default=(120, 300), metavar=("MIN", "MAX"))
    parser.add_argument("--camera-restart-every", type=float, nargs=2, default=(20, 60), metavar=("MIN", "MAX"))
    parser.add_argument("--upload-every", type=float, default=15.0)
    parser.add_argument("--flood", type=int, default=8, help="slow WebSocket subscribers on the stream feeds")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds after ready before RSS is a baseline")
    parser.add_argument("--rss-growth", type=float, default=0.05)
    parser.add_argument("--quota-bytes", type=int, default=64 * 2**20)
    parser.add_argument("--models-dir", type=Path, default=REPO / "weights")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serve-arg", action="append", default=[], help="extra serve flag (repeatable)")
    parser.add_argument(
        "--ped2", type=Path, default=Path(os.environ.get("MNAD_PED2", REPO.parent / "shared/datasets/ped2"))
    )
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "soak.json")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None or not Path("/usr/bin/python3").exists():
        sys.exit("needs ffmpeg and Debian's python3 with python3-gi (tests/service/APT_PACKAGES.txt)")
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="mnad-soak-"))
    camera_clip = encode_h264(ped2_frames(args.ped2, "02"), tmp / "camera.mkv")
    upload = encode_ffv1(ped2_frames(args.ped2, "01")[:60], tmp / "upload.avi").read_bytes()
    cameras = [Camera(camera_clip) for _ in range(args.cameras)]
    for c in cameras:
        c.start()
    data, port = tmp / "data", free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).with_name("serve")), "--port", str(port), "--models-dir",
           str(args.models_dir.resolve()), "--data-dir", str(data), "--device", "cpu", "--log-level", "warning",
           "--source-networks", "127.0.0.0/8", "--upload-quota-bytes", str(args.quota_bytes),
           "--min-free-bytes", "0", "--clip-retention-s", "120", "--reconnect-max-s", "5",
           "--reconnect-healthy-s", "5"]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    cmd += args.serve_arg
    log = (tmp / "serve.log").open("a")
    started = time.time()
    events: list[dict] = []
    lifetimes: list[dict] = []
    problems: list[str] = []

    def start() -> tuple[subprocess.Popen, float, float]:
        """The new server, when it started (older clips and alerts must not be left queued/running/open)
        and when it was ready."""
        t = time.time()
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
        wait_ready(base, proc, 300, tmp / "serve.log")
        return proc, t, time.time()

    proc, _, _ = start()
    client = httpx.Client(base_url=base, timeout=30)
    for i, cam in enumerate(cameras):
        r = client.post("/api/streams", json={"url": cam.url, "name": f"cam{i}"})
        assert r.status_code == 201, r.text
    watcher = AlertWatcher(base.replace("http://", "ws://"))
    watcher.start()
    floods = [Flood(base.replace("http://", "ws://"), client, 0.3) for _ in range(args.flood)]
    for f in floods:
        f.start()
    end = started + args.seconds
    next_kill = time.time() + rng.uniform(*args.kill_every)
    next_camera = time.time() + rng.uniform(*args.camera_restart_every)
    next_upload = time.time()
    life = {"ready": time.time(), "rss_warm": None, "rss_max_after_warmup": 0}
    uploads = {"accepted": 0, "refused": {}}
    while time.time() < end:
        now = time.time()
        rss = rss_bytes(proc.pid)
        if now - life["ready"] >= args.warmup:
            life["rss_warm"] = life["rss_warm"] or rss
            life["rss_max_after_warmup"] = max(life["rss_max_after_warmup"], rss)
        if now >= next_upload:
            next_upload = now + args.upload_every
            try:
                r = client.post("/api/clips", files={"file": ("soak.avi", upload, "video/x-msvideo")})
                if r.status_code == 202:
                    uploads["accepted"] += 1
                else:
                    uploads["refused"][str(r.status_code)] = uploads["refused"].get(str(r.status_code), 0) + 1
                    if r.status_code >= 500 and r.status_code != 507:
                        problems.append(f"upload answered {r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as e:
                problems.append(f"upload failed: {e!r}")
        if now >= next_camera:
            next_camera = now + rng.uniform(*args.camera_restart_every)
            cam = rng.choice(cameras)
            cam.stop()
            time.sleep(rng.uniform(0.5, 3))
            cam.start()
            events.append({"t": round(now - started, 1), "event": "camera restarted", "port": cam.port})
        if now >= next_kill:
            next_kill = now + rng.uniform(*args.kill_every)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            lifetimes.append(life)
            killed_at = time.time()
            proc, new_since, ready = start()
            found = check(data, watcher.seen, new_since, args.quota_bytes)
            events.append({"t": round(killed_at - started, 1), "event": "kill -9", "restart_s":
                           round(ready - killed_at, 1), "problems": found})  # fmt: skip
            print(f"[{killed_at - started:7.1f} s] kill -9, ready again after {ready - killed_at:.1f} s,"
                  f" {len(watcher.seen)} alerts seen, problems: {found or 'none'}", flush=True)  # fmt: skip
            problems += found
            life = {"ready": ready, "rss_warm": None, "rss_max_after_warmup": 0}
        time.sleep(0.5)
    for f in floods:
        f.stop.set()
    watcher.stop.set()
    time.sleep(1)
    proc.terminate()
    proc.wait(30)
    lifetimes.append(life)  # the last lifetime ends with the clean stop, not with the recovery start below
    # A clean stop may leave uploads queued (they are scored after the next start): the invariant is that
    # the next start recovers them, so the end is checked like every kill, after one more start.
    proc, since, _ = start()
    problems += check(data, watcher.seen, since, args.quota_bytes)
    proc.terminate()
    proc.wait(30)
    for life in lifetimes:
        warm = life["rss_warm"]
        life["rss_growth"] = round(life["rss_max_after_warmup"] / warm - 1, 4) if warm else None
        if warm and life["rss_growth"] > args.rss_growth:
            problems.append(f"RSS grew {life['rss_growth']:.1%} after warm-up (bar {args.rss_growth:.0%})")
    for c in cameras:
        c.stop()
    result = {
        "bench": "soak", "command": " ".join(sys.argv), "machine": machine(), "seconds": round(time.time() - started),
        "cameras": args.cameras, "kills": sum(e["event"] == "kill -9" for e in events),
        "camera_restarts": sum(e["event"] == "camera restarted" for e in events), "uploads": uploads,
        "alerts_seen": len(watcher.seen), "flood_messages": sum(f.received for f in floods),
        "lifetimes": [{k: v for k, v in x.items() if k != "ready"} for x in lifetimes], "events": events,
        "problems": problems, "ok": not problems,
    }  # fmt: skip
    write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("events", "machine")}, indent=1))
    sys.exit(0 if not problems else 1)


if __name__ == "__main__":
    main()
