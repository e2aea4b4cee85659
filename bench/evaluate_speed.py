"""Evaluate bench (not a test): `evaluate` over the whole Ped2 test split once per inference path:
frames/s and AUC (both normalizations) against the fp32 path, in one run.

    python bench/evaluate_speed.py [--weights weights/ped2.safetensors] [--paths fp32,bf16,openvino,...]
                                   [--batch-size 16] [--out runs/bench/evaluate_speed.json]

The bar it checks: every path's fused AUC, per-clip min-max and streaming, within 0.3 points of fp32.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import REPO, ForeignLoad, machine, table, write_json

from model.commands.evaluate import main as evaluate

AUC_BAR = 0.3  # points
MAX_FOREIGN = 0.15  # cores other processes may use during a run before it is run again
RETRIES = 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "ped2.safetensors")
    parser.add_argument(
        "--ped2", type=Path, default=Path(os.environ.get("MNAD_PED2", REPO.parent / "shared/datasets/ped2"))
    )
    parser.add_argument("--paths", default="fp32,bf16,compile,openvino,onnxruntime")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (cuda when there is one)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "evaluate_speed.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine() | {"device": args.device}
    print(" ".join(f"{k}={v}" for k, v in info.items()))
    rows, reports = [], {}
    paths = [p for p in args.paths.split(",") if p]
    if "fp32" not in paths:
        paths.insert(0, "fp32")
    for path in paths:
        for attempt in range(RETRIES + 1):  # a run beside another CPU-heavy job is run again
            out = Path(tempfile.mkdtemp(prefix=f"mnad-eval-{path}-"))
            load = ForeignLoad()
            with contextlib.redirect_stdout(io.StringIO()):
                evaluate(args.weights, args.ped2 / "testing", labels=args.ped2 / "frame_labels_ped2.npy", out=out,
                         batch_size=args.batch_size, device=args.device, plots=False, inference=path)  # fmt: skip
            foreign = load.cores()
            if foreign <= MAX_FOREIGN or attempt == RETRIES:
                break
            print(f"    others used {foreign} cores meanwhile: running {path} again in 15 s", flush=True)
            time.sleep(15)
        report = json.loads((out / "report.json").read_text())
        report.pop("clips")
        reports[path] = report
        speed, m = report["speed"], report["metrics"]
        rows.append({
            "path": path, "ran": speed["inference"]["path"], "frames": speed["frames"],
            "score_fps": speed["score_fps"], "build_s": speed["build_s"], "decode_s": speed["decode_s"],
            "auc_paper": round(100 * m["paper"]["fused"]["auc"], 2),
            "auc_streaming": round(100 * m["streaming"]["fused"]["auc"], 2) if "streaming" in m else None,
            "foreign_cores": foreign,
        })  # fmt: skip
        base = rows[0]
        rows[-1]["speedup"] = round(rows[-1]["score_fps"] / base["score_fps"], 2)
        for key in ("auc_paper", "auc_streaming"):
            if rows[-1][key] is not None:
                rows[-1][f"d_{key}"] = round(rows[-1][key] - base[key], 2)
        rows[-1]["auc_ok"] = all(abs(rows[-1].get(f"d_{k}") or 0) <= AUC_BAR for k in ("auc_paper", "auc_streaming"))
        print("  " + " ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    print()
    print(table(rows, ["path", "ran", "frames", "score_fps", "speedup", "auc_paper", "d_auc_paper", "auc_streaming",
                       "d_auc_streaming", "auc_ok", "build_s", "foreign_cores"]))  # fmt: skip
    write_json(args.out, {"bench": "evaluate_speed", "command": " ".join(sys.argv), "machine": info,
                          "weights": str(args.weights), "rows": rows, "reports": reports})  # fmt: skip


if __name__ == "__main__":
    main()
