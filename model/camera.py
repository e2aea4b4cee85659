"""Benign camera changes: what differs between two days of the same camera while the scene does not.

Validation (model.synthetic.benign) makes copies of normal clips with one of them and checks that a
scoring setting stays calm; `train --augment` applies them to training windows so that the memory
items learn the scene rather than one day's exposure, framing, bitrate or sensor gain.
"""

from __future__ import annotations

import cv2
import numpy as np

BENIGN: tuple[str, ...] = ("exposure", "reframe", "compression", "sensor")


def camera_change(frames: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One benign change of the camera (one of BENIGN) applied alike to every frame of (T, H, W, ch) uint8.

    Also what `train --augment` applies to training windows, so the memory learns scenes, not camera settings."""
    if kind == "exposure":
        gain, offset = float(rng.uniform(0.9, 1.1)), float(rng.uniform(-8, 8))
        return np.clip(frames.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
    if kind == "reframe":  # one fixed affine map for the whole clip: the camera moved once, then stayed
        height, width = frames.shape[1:3]
        zoom = float(rng.uniform(1.01, 1.03))
        shift = rng.uniform(2, 4, 2) * rng.choice([-1, 1], 2)
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, zoom)
        matrix[:, 2] += shift
        return np.stack(
            [
                cv2.warpAffine(
                    f, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
                ).reshape(f.shape)
                for f in frames
            ]
        )
    if kind == "compression":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 76))]
        return np.stack(
            [cv2.imdecode(cv2.imencode(".jpg", f, params)[1], cv2.IMREAD_UNCHANGED).reshape(f.shape) for f in frames]
        )
    if kind == "sensor":
        noise = rng.normal(0, float(rng.uniform(2, 4)), frames.shape)
        return np.clip(frames.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    raise ValueError(f"unknown benign kind {kind!r}")
