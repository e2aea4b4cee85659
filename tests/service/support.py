"""Helpers shared by the service tests (imported as `support`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def wait_for(predicate, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


def reference_scores(
    models_dir: Path, frames: np.ndarray, watched: np.ndarray | None = None
) -> dict[int, tuple[float, float, float]]:
    """What `evaluate` computes in streaming mode (score_clips + the calibration) for these decoded frames:
    clip frame index -> (score, psnr, distance). `watched`: a stream's mask, (H, W) at the model's size."""
    import torch

    from model import checkpoint
    from model.data import Clip, preprocess
    from model.scoring import UPDATE_THRESHOLD, score_clips

    ckpt = checkpoint.load(next(models_dir.glob("*.safetensors")))
    net = ckpt.build("cpu")
    clip = Clip("ref", np.stack([preprocess(f, ckpt.config) for f in frames]), 10.0)
    where = ckpt.calibration.regions
    (scored,) = score_clips(
        net, [clip], UPDATE_THRESHOLD[ckpt.config.variant],
        error_windows=(where.error_window,), distance_windows=(where.distance_window,),
        watched=None if watched is None else torch.from_numpy(watched),
    )  # fmt: skip
    score = ckpt.calibration.clip_scores(scored)
    return {
        scored.first_frame + i: (float(score[i]), float(scored.psnr[i]), float(scored.distance[i]))
        for i in range(len(score))
    }


def typed_message(text: str) -> dict:
    """A received WebSocket message, checked against its model (service.core.messages): it validates, and the model
    writes it back to the very same text (field names, values and order), so the wire is the model's."""
    from service.core.messages import parse

    message = parse(text)
    assert message.wire() == text, f"{type(message).__name__} does not write back {text}"
    return json.loads(text)


def ws_messages(ws, until, timeout: float, require: bool = True) -> list[dict]:
    """Messages from a WebSocket, each checked against its model (typed_message), until `until(messages)` or the
    timeout (which fails the test when `require`)."""
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until(out):
        try:
            out.append(typed_message(ws.recv(timeout=1)))
        except TimeoutError:
            continue
    assert not require or until(out), "timed out waiting for WebSocket messages"
    return out


def scored_with(calibration, message: dict, tol: float = 1e-6) -> bool:
    """Whether a score message's score is `calibration`'s of its region measures. Without drift that is one
    number; with drift it depends on the stream's past, which a subscriber that joined late has not seen, so
    the score must lie where any past can put it: the baselines held within `drift_cap` spreads of the means
    (a higher PSNR baseline or a lower distance baseline raises the score)."""
    p, d = message["region_psnr"], message["region_distance"]
    if not calibration.drift_frames:
        return abs(message["score"] - calibration.score(p, d)) < tol
    c = calibration
    dp, dd = c.drift_cap * c.psnr_std, c.drift_cap * c.distance_std
    low = c.score(p, d, (c.psnr_mean - dp, c.distance_mean + dd))
    high = c.score(p, d, (c.psnr_mean + dp, c.distance_mean - dd))
    return low - tol <= message["score"] <= high + tol
