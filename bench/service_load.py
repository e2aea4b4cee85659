"""Load bench (not a test): 4 streams at 10 fps, 20 WebSocket subscribers, 60 s, the shipped model.

    python bench/service_load.py [--models-dir weights] [--seconds 60] [--ped2 ../shared/datasets/ped2]

Streams are a lossless clip of Ped2 frames given at start (`--stream`, played in a loop at 10 fps).
Checks (exit 1 when one fails) and prints:
- no stream stalls: every subscriber's longest silence, counted from when it connected to when it
  stopped (a stream that stops for good also shows), is under 2 s, and every stream is live at the end;
- drop counters match what subscribers missed: for each subscriber, the messages it missed (gaps in
  `seq`) equal the drops the server told it (`dropped` notices); the server's
  mnad_websocket_dropped_messages_total grew by what subscribers were told (plus drops after a
  subscriber's last message, which it cannot be told: printed); and for each stream, the frames
  no subscriber got a score for (gaps in `frame`, less the 4 of each loop's window warm-up) equal
  the growth of its frames_dropped counter (inference behind), give or take the frames read before
  the first and after the last score a subscriber received, plus up to 4 per window restart (after
  a hole the window refills before it scores again);
- p99 capture -> send latency (server histogram, bucket bound) and capture -> receive latency
  (client side).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
from common import REPO, free_port, wait_ready
from websockets.sync.client import connect

CLIP_FRAMES = 180  # Ped2 test clip 01 in full: the stream loops every 180 frames
WARMUP = 4  # frames of each loop without a score (the model's window of 5 fills first)
STALL_S = 2.0
FRAME_BUFFER = 4  # serve's default --frame-buffer: frames read before the run may still be dropped in it


def make_clip(ped2: Path, out: Path, frames: int = CLIP_FRAMES) -> Path:
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
    with connect(url, open_timeout=30) as ws:
        connected = time.monotonic()
        deadline = connected + seconds
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
    out["frames"] = [m["frame"] for m in msgs if m.get("type") == "score"]
    # silences from connecting to stopping: a stream that stalls for good shows as a long last gap
    out["max_gap_s"] = float(np.max(np.diff([connected, *arrivals, max(deadline, time.monotonic())])))


def unscored(frames: list[int], clip_frames: int = CLIP_FRAMES) -> int:
    """Frames between the first and last of `frames` (sorted, unique) that got no score, less each loop's warm-up."""
    missing = 0
    for a, b in itertools.pairwise(frames):
        missing += b - a - 1 - WARMUP * (b // clip_frames - a // clip_frames)
    return missing


def busy_cpu_s() -> float:
    """Machine-wide busy CPU seconds (all cores): with our own and serve's, what others used meanwhile."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system  # serve counts once waited for


def counter(metrics: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name))


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
    cmd = [serve, "--port", str(port), "--models-dir", str(args.models_dir.resolve()), "--data-dir", str(tmp / "data"),
           "--device", args.device, "--log-level", "warning"]  # fmt: skip
    for _ in range(args.streams):
        cmd += ["--stream", str(clip)]
    load_before = os.getloadavg()[0]
    started, busy0, own0 = time.monotonic(), busy_cpu_s(), own_cpu_s()
    proc = subprocess.Popen(cmd, cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, 120)
        (hosted,) = httpx.get(f"{base}/api/models").json()["models"]
        before = {s["id"]: s for s in httpx.get(f"{base}/api/streams").json()}
        ws_dropped_before = counter(httpx.get(f"{base}/metrics").text, "mnad_websocket_dropped_messages_total")
        streams = list(before)
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
    wall = time.monotonic() - started
    foreign = max(0.0, (busy_cpu_s() - busy0) - (own_cpu_s() - own0)) / wall
    if any("max_gap_s" not in r for r in results):
        sys.exit("FAIL: a subscriber did not finish (no connection or an error: see above)")
    latencies = np.concatenate([r["latencies"] for r in results if r.get("latencies")])
    failures = []
    print(f"{args.streams} streams, {args.subscribers} subscribers, {args.seconds:.0f} s; model {hosted['name']}, "
          f"inference {hosted['inference']['path']} on {hosted['device']}, {os.cpu_count()} cores; "
          f"load average before {load_before:.2f}, other processes used {foreign:.2f} cores meanwhile")  # fmt: skip
    for s in info:
        sid, s0 = s["id"], before[s["id"]]
        subs = [r for i, r in enumerate(results) if streams[i % len(streams)] == sid]
        seen = sorted({f for r in subs for f in r["frames"]})  # scored frames: any subscriber got them
        counted = s["frames_dropped"] - s0["frames_dropped"]
        missing = unscored(seen)
        # frames read outside [first, last] seen (or buffered at the start): their drops are counted, unseen
        edges = (seen[0] - s0["frames_read"]) + (s["frames_read"] - 1 - seen[-1]) if seen else s["frames_read"]
        edges += FRAME_BUFFER
        restarts = s["window_restarts"] - s0["window_restarts"]  # each hole costs up to WARMUP scores more
        match = counted - max(edges, 0) <= missing <= counted + WARMUP * restarts
        if not match:
            failures.append(f"stream {sid}: {missing} frames unscored vs frames_dropped +{counted}")
        if s["state"] != "live":
            failures.append(f"stream {sid} is {s['state']}")
        print(f"  stream {sid}: state {s['state']}, read {s['frames_read']}, scored {s['frames_scored']}, "
              f"dropped {s['frames_dropped']} (+{counted} during the run, {restarts} window restarts; "
              f"subscribers saw {missing} unscored"
              f" {'ok' if match else 'MISMATCH'}), reconnects {s['reconnects']}, fps out {s['fps_out']}")  # fmt: skip
    for i, r in enumerate(results):
        match = r["missed"] == r["told"]
        if not match:
            failures.append(f"subscriber {i}: missed {r['missed']} but told {r['told']}")
        if r["max_gap_s"] >= STALL_S:
            failures.append(f"subscriber {i}: silent for {r['max_gap_s']:.2f} s (stall)")
        print(
            f"  subscriber {i:2d}: received {r['received']}, missed {r['missed']}, told {r['told']}"
            f" {'ok' if match else 'MISMATCH'}, longest gap {r['max_gap_s']:.2f} s"
        )
    ws_dropped = counter(metrics, "mnad_websocket_dropped_messages_total") - ws_dropped_before
    told = sum(r["told"] for r in results)
    if ws_dropped < told:
        failures.append(f"server counted {ws_dropped:.0f} WebSocket drops, subscribers were told {told}")
    print(f"WebSocket drops: server counter +{ws_dropped:.0f}, told to subscribers {told}, missed by them "
          f"{sum(r['missed'] for r in results)} (after their last message: {ws_dropped - told:.0f})")  # fmt: skip
    p99_server = histogram_quantile(metrics, "mnad_end_to_end_seconds", 0.99)
    print(f"p99 capture->send latency (server histogram bucket bound): {p99_server} s")
    print(f"p99 capture->receive latency (clients): {np.quantile(latencies, 0.99) * 1000:.1f} ms "
          f"(p50 {np.quantile(latencies, 0.5) * 1000:.1f} ms, max {np.max(latencies) * 1000:.1f} ms, "
          f"{len(latencies)} messages)")  # fmt: skip
    print("PASS" if not failures else "FAIL: " + "; ".join(failures))
    sys.exit(0 if not failures else 1)


if __name__ == "__main__":
    main()
