"""One RTSP camera at 10 fps for a long time, with camera restarts: does the service lose any frame?

    python bench/rtsp_steady.py [--seconds 600] [--camera-restarts 5]

Issue 13's bar, on a quiet machine: 0 frames dropped and 0 window restarts at stream start, over
10 minutes and across 5 camera restarts, read from the counters in /api/streams. The camera is
tests/service/rtsp_server.py serving the Ped2 test split as H.264 at 10 fps (bench/service_rtsp.py's
clip); a restart stops the RTSP server and starts it again on the same port after 2 s, evenly spaced
over the run. The counters are read from the moment the stream is added, so start-up counts too.
Prints the counters and the CPU other processes used meanwhile (a number taken beside another job
is not a number); exits 1 when the bar is missed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import REPO, ForeignLoad, free_port, machine, start_rtsp_camera, wait_ready, write_json
from service_rtsp import cpu_seconds, make_clip


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


class DropWatch:
    """Polls the stream's counters once a second and notes when frames were dropped: at start, around a
    camera restart, or out of the blue (a stall) are different bugs."""

    def __init__(self, url: str, started: float) -> None:
        self.url, self.started, self.dropped, self.events = url, started, 0, []

    def sleep_until(self, t: float) -> None:
        while (left := t - time.monotonic()) > 0:
            time.sleep(min(1.0, left))
            s = httpx.get(self.url, timeout=10).json()
            if s["frames_dropped"] != self.dropped:
                self.events.append((round(time.monotonic() - self.started, 1), s["frames_dropped"] - self.dropped))
                self.dropped = s["frames_dropped"]
                print(f"[{self.events[-1][0]:6.1f} s] {self.events[-1][1]} frame(s) dropped", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--camera-restarts", type=int, default=5)
    parser.add_argument("--models-dir", type=Path, default=REPO / "weights")
    parser.add_argument(
        "--ped2", type=Path, default=Path(os.environ.get("MNAD_PED2", REPO.parent / "shared/datasets/ped2"))
    )
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "rtsp_steady.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mnad-rtsp-steady-"))
    clip = make_clip(args.ped2, tmp / "ped2-test.mkv")
    camera_port, port = free_port(), free_port()
    camera = start_rtsp_camera(clip, camera_port)
    cmd = [str(Path(sys.executable).with_name("serve")), "--port", str(port), "--models-dir",
           str(args.models_dir.resolve()), "--data-dir", str(tmp / "data"), "--device", "cpu", "--log-level",
           "warning", "--source-networks", "127.0.0.0/8"]  # fmt: skip
    log = (tmp / "serve.log").open("w")
    serve = subprocess.Popen(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    restarts: list[float] = []
    try:
        wait_ready(base, serve, 300, tmp / "serve.log")
        load, serve0, camera0 = ForeignLoad(), cpu_seconds(serve.pid), cpu_seconds(camera.pid)
        started = time.monotonic()
        r = httpx.post(f"{base}/api/streams", json={"url": f"rtsp://127.0.0.1:{camera_port}/clip", "name": "cam"})
        sid = r.json()["id"]
        watch = DropWatch(f"{base}/api/streams/{sid}", started)
        every = args.seconds / (args.camera_restarts + 1)
        for k in range(1, args.camera_restarts + 1):
            watch.sleep_until(started + k * every)
            stop(camera)  # waited for: its CPU counts as this process's own from here
            camera0 = 0.0
            time.sleep(2)
            camera = start_rtsp_camera(clip, camera_port)
            restarts.append(round(time.monotonic() - started, 1))
            print(f"[{restarts[-1]:6.1f} s] camera restarted", flush=True)
        watch.sleep_until(started + args.seconds)
        s = httpx.get(f"{base}/api/streams/{sid}").json()
        foreign = load.cores(extra_own_s=cpu_seconds(serve.pid) - serve0 + cpu_seconds(camera.pid) - camera0)
    finally:
        stop(serve)
        stop(camera)
        for line in (tmp / "serve.log").read_text().splitlines():
            if "fell behind" in line:
                print("serve:", line)
    keys = ("frames_read", "frames_scored", "frames_dropped", "window_restarts", "reconnects", "state", "last_error")
    result = {
        "bench": "rtsp_steady", "command": " ".join(sys.argv), "machine": machine(), "seconds": args.seconds,
        "camera_restarts": restarts, **{k: s.get(k) for k in keys}, "drops_at": watch.events,
        "foreign_cores": foreign,
        "ok": s["frames_dropped"] == 0 and s["window_restarts"] == 0 and s["frames_scored"] > 0,
    }  # fmt: skip
    print(" ".join(f"{k}={v}" for k, v in result.items() if k != "machine"))
    write_json(args.out, result)
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
