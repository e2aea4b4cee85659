"""int8 trial (not a test, not a shipped path): OpenVINO + NNCF post-training quantization of the shipped
model, its Ped2 AUCs and evaluate-style speed against the bf16 path, for docs/benchmarks.md.

    pip install nncf   # not a project dependency: int8 did not hold the accuracy bar
    python bench/int8_trial.py [--weights weights/ped2.safetensors] [--ped2 ../shared/datasets/ped2]

Calibration: 20 random windows from each of training clips 01-14 (the clips the model trained on; no
test frame). The memory read (MatMul, Softmax) always stays in floating point. Variants keep more
convolutions in bf16: none, the first and the last three (the decoder head), plus the encoder's last
stage (the queries), or the whole encoder. Each is scored like `evaluate` (all test clips in lockstep).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import REPO, table

from model import checkpoint
from model.calibration import FUSION_WEIGHT
from model.data import load_clips, to_tensor
from model.inference import InferencePath, _example, _Graph
from model.inference import build as build_inference
from model.metrics import aligned_labels, report
from model.scoring import UPDATE_THRESHOLD, score_clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "ped2.safetensors")
    parser.add_argument(
        "--ped2", type=Path, default=Path(os.environ.get("MNAD_PED2", REPO.parent / "shared/datasets/ped2"))
    )
    args = parser.parse_args()
    try:
        import nncf
        import openvino as ov
    except ImportError:
        sys.exit("needs openvino and nncf: pip install 'mnad-service[fast]' nncf")
    ckpt = checkpoint.load(args.weights)
    net = ckpt.build().eval()
    c = net.config
    with torch.no_grad():
        graph = ov.convert_model(_Graph(copy.deepcopy(net)), example_input=_example(c, 1, "cpu"))
    graph.reshape({0: [-1, c.input_frames * c.channels, c.height, c.width], 1: [-1, c.memory_size, c.feature_dim]})
    convs = [op.get_friendly_name() for op in graph.get_ordered_ops() if "Convolution" in op.get_type_name()]
    rng = np.random.default_rng(0)
    train = load_clips(args.ped2 / "training" / "frames", c)[:14]
    windows = [
        clip.frames[t : t + c.window] for clip in train for t in rng.choice(len(clip.frames) - c.window, 20, False)
    ]
    items = net.items.detach()[None].numpy().copy()
    split = c.past_frames * c.channels

    def sample(window: np.ndarray) -> list[np.ndarray]:
        return [to_tensor(window[None])[:, :split].numpy().copy(), items]

    test = load_clips(args.ped2 / "testing" / "frames", c)
    labels = aligned_labels(np.load(args.ped2 / "frame_labels_ped2.npy"), [len(t.frames) for t in test], c.window - 1)
    encoder = convs[:8]  # four stages of two convolutions
    mixed, performance = nncf.QuantizationPreset.MIXED, nncf.QuantizationPreset.PERFORMANCE
    variants = {
        "all convolutions int8 (preset performance)": ([], performance),
        "first + decoder head (last 3) in bf16": (convs[:1] + convs[-3:], mixed),
        "... + encoder stage 4 (queries) in bf16": (
            convs[:1] + encoder[6:] + convs[-3:],
            nncf.QuantizationPreset.MIXED,
        ),
        "whole encoder + decoder head in bf16": (encoder + convs[-3:], mixed),
    }
    rows = []

    def score(name: str, path, build_s: float) -> None:
        started = time.perf_counter()
        scored = score_clips(path, test, UPDATE_THRESHOLD[c.variant], batch_size=16)
        fps = sum(len(s.psnr) for s in scored) / (time.perf_counter() - started)
        r = report(scored, labels, ckpt.calibration, FUSION_WEIGHT[c.variant])
        rows.append({"variant": name, "score_fps": round(fps, 1), "build_s": round(build_s, 1),
                     "auc_paper": round(100 * r["paper"]["fused"]["auc"], 2),
                     "auc_streaming": round(100 * r["streaming"]["fused"]["auc"], 2),
                     "psnr_only_paper": round(100 * r["paper"]["psnr_only"]["auc"], 2)})  # fmt: skip
        print("  " + " ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)

    score("bf16 (auto)", build_inference("bf16", net, "cpu"), 0.0)
    core = ov.Core()
    for name, (keep, preset) in variants.items():
        started = time.perf_counter()
        quantized = nncf.quantize(
            graph, nncf.Dataset(windows, sample), subset_size=len(windows), preset=preset,
            ignored_scope=nncf.IgnoredScope(names=keep, types=["MatMul", "Softmax"], validate=False),
        )  # fmt: skip
        config = {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": torch.get_num_threads()}  # fmt: skip
        compiled = core.compile_model(quantized, "CPU", config)
        request = compiled.create_infer_request()

        def run(x, items_, request=request):
            out = request.infer([np.ascontiguousarray(x.numpy()), np.ascontiguousarray(items_.numpy())])
            return torch.from_numpy(out[0]), torch.from_numpy(out[1])

        score(name, InferencePath("int8", "int8", net, run, name), time.perf_counter() - started)
    print()
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
