"""Model bench (not a test): frames/s and latency of `score_step` per inference path, and of the service's
engine with one stream, for the shipped setting and the paper's.

    python bench/model_speed.py [--paths fp32,bf16,compile,openvino,onnxruntime] [--settings shipped,paper,checkpoint]
                                [--batch 8] [--seconds 8] [--weights weights/ped2.safetensors] [--out FILE]

- model rows: `score_step` (forward + PSNR + feature distance + memory update, what evaluate and the
  engine run per batch) on fixed random inputs, batch 1 and `--batch`; speed does not depend on the
  weights, so the paper's setting (width 64, 256x256) uses a random-init network.
- `--settings checkpoint`: the --weights checkpoint's own config (e.g. a wider model than the shipped one).
- engine rows (shipped or checkpoint setting): one lane of service.pipeline.engine.Engine fed Ped2 frames as fast
  as it scores them, Engine.step called in a loop: window, tensor, score_step, heatmap, calibration, per frame.
Every path is compared with fp32 eager of the same setting and batch, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import REPO, ForeignLoad, machine, table, write_json

from model import checkpoint, inference
from model.calibration import Calibration
from model.device import pick_device
from model.network import MemoryAE, ModelConfig
from model.scoring import UPDATE_THRESHOLD, score_step

SETTINGS = {
    "shipped": ModelConfig("prediction", 16, 128, 192, 1, 10, 4),
    "paper": ModelConfig("prediction", 64, 256, 256, 1, 10, 4),
}


MAX_FOREIGN = 0.1  # cores other processes may use during a row before it is measured again
RETRIES = 30


def timed(fn, seconds: float, min_calls: int = 3, warmup: int = 2) -> tuple[list[float], float]:
    """Call times of `fn` over `seconds`, and the cores others used meanwhile; measured again (after a
    pause) while another process takes more than MAX_FOREIGN cores, up to RETRIES times."""
    for attempt in range(RETRIES + 1):
        for _ in range(warmup):
            fn()
        times: list[float] = []
        load = ForeignLoad()
        deadline = time.perf_counter() + seconds
        while len(times) < min_calls or time.perf_counter() < deadline:
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        foreign = load.cores()
        if foreign <= MAX_FOREIGN or attempt == RETRIES:
            return times, foreign
        print(f"    others used {foreign} cores meanwhile: measuring again in 10 s", flush=True)
        time.sleep(10)
    raise AssertionError("unreachable")


def synced(fn, device: torch.device):
    """`fn` that returns once the device has finished its work: CUDA runs asynchronously."""
    if device.type != "cuda":
        return fn

    def run() -> None:
        fn()
        torch.cuda.synchronize(device)

    return run


def model_rows(
    name: str, config: ModelConfig, net: MemoryAE, paths: list[str], batches: list[int], seconds: float,
    device: torch.device,
):  # fmt: skip
    g = torch.Generator().manual_seed(0)
    rows = []
    baseline: dict[int, float] = {}
    for requested in paths:
        started = time.perf_counter()
        path = inference.build(requested, net, device)
        build_s = time.perf_counter() - started
        if path.name != requested:
            print(f"  {name}/{requested}: not available ({path.fallback}); skipped")
            continue
        for batch in batches:
            frames = (torch.rand(batch, config.window, config.height, config.width, generator=g) * 2 - 1).to(device)
            x, target = frames[:, : config.past_frames], frames[:, config.past_frames :]
            items = net.items.expand(batch, -1, -1).contiguous()
            threshold = UPDATE_THRESHOLD[config.variant]
            step = synced(lambda: score_step(path, x, target, items, threshold), device)  # noqa: B023
            first = time.perf_counter()
            step()  # compile paths: a new shape
            first_s = time.perf_counter() - first
            times, foreign = timed(step, seconds)
            fps = batch * len(times) / sum(times)
            if requested == "fp32":
                baseline[batch] = fps
            rows.append({
                "setting": name, "size": f"w{config.base_width} {config.height}x{config.width}", "path": requested,
                "detail": path.detail, "batch": batch, "frames_per_s": round(fps, 1),
                "ms_per_call_p50": round(1000 * statistics.median(times), 2),
                "ms_per_call_p99": round(1000 * float(np.quantile(times, 0.99)), 2),
                "ms_per_frame": round(1000 / fps, 2),
                "speedup": round(fps / baseline[batch], 2) if batch in baseline else None,
                "build_s": round(build_s, 1), "first_call_s": round(first_s, 2), "calls": len(times),
                "foreign_cores": foreign,
            })  # fmt: skip
            print("  " + " ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    return rows


def ped2_frames(config: ModelConfig, count: int = 64) -> np.ndarray:
    from model.data import preprocess

    root = Path(os.environ.get("MNAD_PED2", REPO.parent / "shared/datasets/ped2")) / "testing/frames/01"
    files = sorted(root.glob("*.jpg"))[:count]
    if not files:  # no dataset: noise frames (speed does not depend on the content)
        return np.random.default_rng(0).integers(0, 256, (count, config.height, config.width, 1), dtype=np.uint8)
    import cv2

    return np.stack([preprocess(cv2.imread(str(f)), config) for f in files])


class _Quiet:
    def on_scored(self, scored) -> list:
        return []


def engine_rows(
    setting: str, ckpt: checkpoint.Checkpoint | None, config: ModelConfig, net: MemoryAE, paths: list[str], seconds,
    device: torch.device, mask: list | None = None,
):  # fmt: skip
    """One stream through the real engine: Engine.step([lane]) in a loop, one frame per step; with `mask`, each
    path once more with the lane masked (service.pipeline.masks)."""
    from service.capture.buffer import Frame
    from service.pipeline.engine import Engine
    from service.pipeline.host import HostedModel
    from service.pipeline.masks import watched_share, watched_tensor

    calibration = (ckpt.calibration if ckpt else None) or Calibration(30.0, 1.0, 0.01, 0.001, 0.6, 0.9, 0.8, 2)
    ckpt = ckpt or checkpoint.Checkpoint(config, {}, 10.0, calibration)
    frames = ped2_frames(config)
    rows = []
    baseline = None
    runs = [(requested, polygons) for requested in paths for polygons in ([[]] + ([mask] if mask else []))]
    for requested, polygons in runs:
        path = inference.build(requested, net, device)
        if path.name != requested:
            continue
        hosted = HostedModel(
            "bench", Path("bench"), ckpt, net, device, net.items.detach().clone(),
            UPDATE_THRESHOLD[config.variant], calibration, path,
        )  # fmt: skip
        engine = Engine(max_batch=16, max_wait_s=0.0, publish=lambda messages: None)
        lane = engine.add_lane("bench", hosted, 4, _Quiet())
        lane.watched = watched_tensor(polygons, hosted)
        counter = iter(range(10**9))

        def one() -> None:
            i = next(counter)  # noqa: B023
            lane.buffer.put(Frame(i, 0, time.time(), frames[i % len(frames)]))  # noqa: B023
            engine.step([lane])  # noqa: B023

        for _ in range(config.window):  # fill the window: from here on every step scores a frame
            one()
        times, foreign = timed(one, seconds, warmup=3)
        fps = len(times) / sum(times)
        baseline = baseline or (fps if requested == "fp32" and not polygons else None)
        rows.append({
            "setting": setting, "path": requested, "streams": 1, "watched": round(watched_share(polygons), 3),
            "frames_per_s": round(fps, 1),
            "ms_per_frame_p50": round(1000 * statistics.median(times), 2),
            "ms_per_frame_p99": round(1000 * float(np.quantile(times, 0.99)), 2),
            "speedup": round(fps / baseline, 2) if baseline else None, "frames": len(times),
            "foreign_cores": foreign,
        })  # fmt: skip
        print("  engine " + " ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--paths", default="fp32,bf16,compile,openvino,onnxruntime")
    parser.add_argument("--settings", default="shipped,paper", help="shipped, paper, checkpoint (--weights' config)")
    parser.add_argument("--batch", type=int, default=8, help="the batched size (besides batch 1)")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per row (after warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "ped2.safetensors")
    parser.add_argument("--no-engine", action="store_true", help="skip the engine rows")
    parser.add_argument("--mask", default="", help='engine rows masked too: JSON polygons, "[[[0.7,0],[1,0],[1,0.2]]]"')
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (cuda when there is one)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "model_speed.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = [p for p in args.paths.split(",") if p]
    if "fp32" not in paths:
        paths.insert(0, "fp32")  # the baseline every speed-up is measured against
    device = pick_device(args.device)
    info = machine() | {"device": str(device)}
    print(" ".join(f"{k}={v}" for k, v in info.items()))
    ckpt = checkpoint.load(args.weights) if args.weights.is_file() else None
    results, engine = [], []
    for name in args.settings.split(","):
        if name == "checkpoint" and ckpt is None:
            sys.exit(f"--settings checkpoint needs --weights: {args.weights} is not a file")
        config = ckpt.config if name == "checkpoint" else SETTINGS[name]
        trained = name in ("shipped", "checkpoint")  # real weights and engine rows
        if trained and ckpt is not None and ckpt.config == config:
            net, weights = ckpt.build(device), str(args.weights)
        else:
            torch.manual_seed(0)
            net, weights = MemoryAE(config).to(device).eval(), "random init"
        print(f"{name}: {config} ({weights})", flush=True)
        results += model_rows(name, config, net, paths, [1, args.batch], args.seconds, device)
        if trained and not args.no_engine:
            ckpt_used = ckpt if weights != "random init" else None
            mask = json.loads(args.mask) if args.mask else None
            engine += engine_rows(name, ckpt_used, config, net, paths, args.seconds, device, mask)
    print()
    print(table(results, ["setting", "size", "path", "batch", "frames_per_s", "ms_per_frame", "ms_per_call_p50",
                          "ms_per_call_p99", "speedup", "build_s", "first_call_s", "foreign_cores"]))  # fmt: skip
    if engine:
        print()
        print(table(engine, ["setting", "path", "streams", "watched", "frames_per_s", "ms_per_frame_p50",
                             "ms_per_frame_p99", "speedup", "foreign_cores"]))  # fmt: skip
    write_json(args.out, {"bench": "model_speed", "command": " ".join(sys.argv), "machine": info,
                          "model": results, "engine": engine})  # fmt: skip


if __name__ == "__main__":
    main()
