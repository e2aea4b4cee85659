"""Load bench (not a test): 4 streams at 10 fps, 20 WebSocket subscribers, 60 s, the shipped model.

    python bench/service_load.py [--models-dir weights] [--seconds 60] [--ped2 ../shared/datasets/ped2]

Streams are a lossless clip of Ped2 frames given at start (`--stream`, played in a loop at 10 fps).
Checks and prints: no stream stalls (longest gap between scored frames), each subscriber's missed
messages (gaps in `seq`) equal the drops signalled to it, and p99 capture -> send latency (server
histogram) and capture -> receive latency (client side).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
from websockets.sync.client import connect

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_clip(ped2: Path, out: Path, frames: int = 180) -> Path:
    files = sorted((ped2 / "testing" / "frames" / "01").glob("*.jpg"))[:frames]
    first = cv2.imread(str(files[0]))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"FFV1"), 10, first.shape[1::-1])
    for f in files:
        writer.write(cv2.imread(str(f)))
    writer.release()
    return out


def histogram_quantile(metrics: str, name: str, q: float) -> float | None:
    buckets = []
    for line in metrics.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    return next(le for le, count in buckets if count >= q * total)


def subscriber(url: str, seconds: float, out: dict) -> None:
    msgs, latencies, arrivals = [], [], []
    deadline = time.monotonic() + seconds
    with connect(url, open_timeout=30) as ws:
        while time.monotonic() < deadline:
            try:
                m = json.loads(ws.recv(timeout=1))
            except TimeoutError:
                continue
            msgs.append(m)
            if m.get("type") == "score":
                latencies.append(time.time() - m["captured"])
                arrivals.append(time.monotonic())
    seqs = [m["seq"] for m in msgs if "seq" in m]
    out["received"] = len(seqs)
    out["missed"] = (seqs[-1] - seqs[0] + 1 - len(seqs)) if seqs else 0
    out["told"] = sum(m["dropped"] for m in msgs if m.get("type") == "dropped")
    out["latencies"] = latencies
    out["max_gap_s"] = float(np.max(np.diff(arrivals))) if len(arrivals) > 1 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models-dir", type=Path, default=REPO / "weights")
    parser.add_argument(
        "--ped2", type=Path, default=Path(os.environ.get("MNAD_PED2", REPO.parent / "shared/datasets/ped2"))
    )
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mnad-bench-"))
    clip = make_clip(args.ped2, tmp / "ped2-01.avi")
    port = free_port()
    serve = str(Path(sys.executable).with_name("serve"))
    cmd = [serve, "--port", str(port), "--models-dir", str(args.models_dir), "--data-dir", str(tmp / "data"),
           "--device", args.device, "--log-level", "warning"]  # fmt: skip
    for _ in range(args.streams):
        cmd += ["--stream", str(clip)]
    proc = subprocess.Popen(cmd, cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("serve did not become ready")
            time.sleep(0.5)
        streams = [s["id"] for s in httpx.get(f"{base}/api/streams").json()]
        results = [{} for _ in range(args.subscribers)]
        threads = [
            threading.Thread(
                target=subscriber,
                args=(f"ws://127.0.0.1:{port}/ws/streams/{streams[i % len(streams)]}", args.seconds, results[i]),
            )
            for i in range(args.subscribers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.seconds + 60)
        info = httpx.get(f"{base}/api/streams").json()
        metrics = httpx.get(f"{base}/metrics").text
    finally:
        proc.terminate()
        proc.wait(30)
    latencies = np.concatenate([r["latencies"] for r in results if r.get("latencies")])
    ok = True
    print(f"{args.streams} streams, {args.subscribers} subscribers, {args.seconds:.0f} s")
    for s in info:
        print(f"  stream {s['id']}: state {s['state']}, read {s['frames_read']}, scored {s['frames_scored']}, "
              f"dropped {s['frames_dropped']}, fps out {s['fps_out']}")  # fmt: skip
    for i, r in enumerate(results):
        match = r["missed"] == r["told"]
        ok &= match and r["max_gap_s"] < 2.0
        print(
            f"  subscriber {i:2d}: received {r['received']}, missed {r['missed']}, told {r['told']}"
            f" {'ok' if match else 'MISMATCH'}, longest gap {r['max_gap_s']:.2f} s"
        )
    p99_server = histogram_quantile(metrics, "mnad_end_to_end_seconds", 0.99)
    print(f"p99 capture->send latency (server histogram bucket bound): {p99_server} s")
    print(f"p99 capture->receive latency (clients): {np.quantile(latencies, 0.99) * 1000:.1f} ms "
          f"(p50 {np.quantile(latencies, 0.5) * 1000:.1f} ms, {len(latencies)} messages)")  # fmt: skip
    print("PASS" if ok else "FAIL: a stream stalled (gap >= 2 s) or drops did not match what subscribers missed")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
