"""Where in the frame the anomaly is (paper, Fig. 5): the per-pixel error of the predicted frame.

The engine keeps one small float map per scored frame, the RMS error over colour channels in
pixel units ([0, 1]) at the model's input size; nothing is encoded per frame. Pictures are
drawn only when someone asks for one: the map is smoothed (local RMS, so a region the model got
wrong outweighs the thin edges of people walking normally), upsampled to the picture, mapped to
colour on a fixed scale (the same for every frame and model, so a calm frame looks calm) and
blended over it. The scale was chosen on Ped2 test clip 04 with the shipped model: the cart and
bikes come out red, walkers faint blue, empty pavement clear.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

# Display scale, in local RMS pixel error (fraction of full scale): below LOW is transparent
# (noise, normal motion), HIGH and above is the hottest colour.
LOW = 0.02
HIGH = 0.10
SMOOTH = 1 / 96  # Gaussian sigma of the local RMS, as a fraction of the map's longer side (2 px at 128x192)
OPACITY = 0.75  # of the hottest colour over the picture
COLORMAP = cv2.COLORMAP_JET


def pixel_errors(squared: Tensor) -> np.ndarray:
    """(B, ch, H, W) squared error, pixels in [0, 1] (`score_step`'s) -> (B, H, W) float32 RMS over channels."""
    with torch.inference_mode():
        error = squared.mean(dim=1).sqrt_()
    return error.cpu().numpy().astype(np.float32, copy=False)


def shrink(error: np.ndarray, longest: int) -> np.ndarray:
    """An error map at most `longest` pixels on its longer side, as uint8 (error x 255), RMS per cell.

    What an upload keeps per frame: a few KB instead of the full map, enough to show where."""
    h, w = error.shape
    scale = min(1.0, longest / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    mean_sq = cv2.resize(np.square(error, dtype=np.float32), size, interpolation=cv2.INTER_AREA)
    return np.clip(np.sqrt(mean_sq) * 255 + 0.5, 0, 255).astype(np.uint8)


def expand(stored: np.ndarray) -> np.ndarray:
    """Inverse of `shrink` (at its resolution): float32 pixel error."""
    return stored.astype(np.float32) / 255


def to_bgr(image: np.ndarray) -> np.ndarray:
    """A decoded frame or model input, (H, W), (H, W, 1) or (H, W, 3) uint8 -> (H, W, 3) BGR."""
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    return cv2.cvtColor(image.reshape(image.shape[0], image.shape[1]), cv2.COLOR_GRAY2BGR)


def fit(image: np.ndarray, width: int) -> np.ndarray:
    """Downscale to at most `width` pixels wide (never up: the page scales as it likes)."""
    h, w = image.shape[:2]
    if w <= width:
        return image
    return cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def intensity(error: np.ndarray, height: int, width: int) -> np.ndarray:
    """The error map, smoothed and upsampled to (height, width), on the display scale: float32 in [0, 1]."""
    sigma = SMOOTH * max(error.shape)
    local = np.sqrt(cv2.GaussianBlur(np.square(error, dtype=np.float32), (0, 0), sigma))
    up = cv2.resize(local, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip((up - LOW) / (HIGH - LOW), 0.0, 1.0)


def heatmap_rgba(error: np.ndarray, height: int, width: int) -> np.ndarray:
    """Colour-mapped error with alpha growing with it: lay it over the picture, or look at it alone."""
    level = intensity(error, height, width)
    colour = cv2.applyColorMap((level * 255).astype(np.uint8), COLORMAP)
    alpha = (level * OPACITY * 255).astype(np.uint8)
    return np.dstack([cv2.cvtColor(colour, cv2.COLOR_BGR2RGB), alpha])


def overlay(picture: np.ndarray, error: np.ndarray) -> np.ndarray:
    """The picture (BGR) with the heatmap blended over it."""
    h, w = picture.shape[:2]
    level = intensity(error, h, w)
    colour = cv2.applyColorMap((level * 255).astype(np.uint8), COLORMAP).astype(np.float32)
    alpha = (level * OPACITY)[:, :, None]
    return (picture.astype(np.float32) * (1 - alpha) + colour * alpha + 0.5).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int = 80) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def png_rgba(rgba: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()


def render(
    picture: np.ndarray,
    error: np.ndarray | None,
    width: int,
    overlaid: bool,
    box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """The picture as shown: BGR, at most `width` wide, heatmap blended in when asked and known, and with
    the heatmap the box of the region that set the score (fractions of the frame), so the two agree."""
    image = fit(to_bgr(picture), width)
    if not overlaid or error is None:
        return image
    image = overlay(image, error)
    if box is not None:
        h, w = image.shape[:2]
        x, y, bw, bh = box
        top_left = (round(x * w), round(y * h))
        bottom_right = (round((x + bw) * w) - 1, round((y + bh) * h) - 1)
        cv2.rectangle(image, top_left, bottom_right, (255, 255, 255), max(1, w // 320), cv2.LINE_AA)
    return image


def render_heatmap(picture: np.ndarray, error: np.ndarray, width: int) -> bytes:
    """The heatmap PNG at the size `render` gives the same picture, so the two line up."""
    h, w = fit(picture, width).shape[:2]
    return png_rgba(heatmap_rgba(error, h, w))
