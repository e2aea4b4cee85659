"""A busier day: the moving people of one normal clip composited into another of the same camera.

Crowds vary by hour and by day, and a denser crowd lowers a frame's PSNR though nothing in it is
anomalous. Held-out clips from one quiet afternoon cannot show that, so validation and training
borrow it from the camera's own footage: what moves in a *donor* clip (its pixels away from the
donor's median background) is laid over a *base* clip, frame by frame, at its own place and time.
Both clips share the camera's background, so the mask may be generous and feathered: no paste
edge, real legs, real walking speed, real lanes. The pavement around a donor's walker never covers one of
the base's walkers (else people would fade in and out where another one passes: an anomaly of the
composite, not of the scene); only where two people overlap does one hide the other.
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


def moving(frames: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """(T, H, W, ch) uint8 and its background -> (T, H, W) uint8 in {0, 1}: the moving pixels themselves."""
    difference = np.abs(frames.astype(np.float32) - empty).mean(axis=-1)  # (T, H, W)
    opening = np.ones((3, 3), np.uint8)
    return np.stack([cv2.morphologyEx((d > THRESHOLD).astype(np.uint8), cv2.MORPH_OPEN, opening) for d in difference])


def foreground(frames: np.ndarray, empty: np.ndarray, people: np.ndarray | None = None) -> np.ndarray:
    """(T, H, W, ch) uint8 and its background -> (T, H, W, 1) float32 in [0, 1]: where something is.

    `people`: `moving(frames, empty)` when the caller has it already."""
    return feather(moving(frames, empty) if people is None else people)


def feather(people: np.ndarray) -> np.ndarray:
    """(T, H, W) masks in {0, 1} -> (T, H, W, 1) float32 in [0, 1]: grown by GROW, its edge faded over FEATHER."""
    kernel = np.ones((GROW, GROW), np.uint8)
    masks = []
    for m in people.astype(np.uint8, copy=False):
        soft = cv2.GaussianBlur(cv2.dilate(m, kernel).astype(np.float32), (0, 0), FEATHER)
        masks.append(np.maximum(soft, m))  # the moving pixels themselves come whole, the edge fades around them
    return np.stack(masks)[..., None]


def busier(
    base: np.ndarray,
    donor: np.ndarray,
    donor_background: np.ndarray | None = None,
    base_background: np.ndarray | None = None,
) -> np.ndarray:
    """The donor's moving things over the base, frame by frame: both (T, H, W, ch) uint8 of one camera.

    Backgrounds default to each clip's median; pass them for a few frames cut from a longer clip."""
    n = min(len(base), len(donor))
    base, donor = base[:n], donor[:n]
    empty = background(donor) if donor_background is None else donor_background
    walkers = moving(donor, empty)
    alpha = foreground(donor, empty, walkers)  # (T, H, W, 1)
    residents = moving(base, background(base) if base_background is None else base_background)
    residents = np.stack([cv2.dilate(m, np.ones((3, 3), np.uint8)) for m in residents])[..., None]
    alpha = np.where(walkers[..., None] > 0, alpha, alpha * (1 - residents))  # the ring spares the base's walkers
    out = alpha * donor.astype(np.float32) + (1 - alpha) * base.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
