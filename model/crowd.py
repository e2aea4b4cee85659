"""A busier day: the moving people of one normal clip composited into another of the same camera.

Crowds vary by hour and by day, and a denser crowd lowers a frame's PSNR though nothing in it is
anomalous. Held-out clips from one quiet afternoon cannot show that, so validation and training
borrow it from the camera's own footage: what moves in a *donor* clip (its pixels away from the
donor's median background) is laid over a *base* clip, frame by frame, at its own place and time.
Both clips share the camera's background, so the mask may be generous and feathered: no paste
edge, real legs, real walking speed, real lanes. Only where two people overlap does one hide the other.
"""

from __future__ import annotations

import cv2
import numpy as np

THRESHOLD = 15.0  # grey levels from the background that count as something moving
GROW = 7  # pixels the mask grows by, so a person's blurred outline comes along
FEATHER = 2.0  # sigma of the mask's soft edge, pixels


def background(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, ch) uint8 -> (H, W, ch) float32 median over up to 32 frames: the empty scene."""
    return np.median(frames[:: max(1, len(frames) // 32)], axis=0).astype(np.float32)


def foreground(frames: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """(T, H, W, ch) uint8 and its background -> (T, H, W, 1) float32 in [0, 1]: where something is."""
    difference = np.abs(frames.astype(np.float32) - empty).mean(axis=-1)  # (T, H, W)
    kernel = np.ones((GROW, GROW), np.uint8)
    masks = []
    for d in difference:
        m = cv2.morphologyEx((d > THRESHOLD).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        soft = cv2.GaussianBlur(cv2.dilate(m, kernel).astype(np.float32), (0, 0), FEATHER)
        masks.append(np.maximum(soft, m))  # the moving pixels themselves come whole, the edge fades around them
    return np.stack(masks)[..., None]


def busier(base: np.ndarray, donor: np.ndarray, donor_background: np.ndarray | None = None) -> np.ndarray:
    """The donor's moving things over the base, frame by frame: both (T, H, W, ch) uint8 of one camera."""
    n = min(len(base), len(donor))
    base, donor = base[:n], donor[:n]
    alpha = foreground(donor, background(donor) if donor_background is None else donor_background)
    out = alpha * donor.astype(np.float32) + (1 - alpha) * base.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
