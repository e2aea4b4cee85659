"""A camera's mask: the parts of its picture the score ignores (a burnt-in clock, a road, a tree in the wind).

Polygons in fractions of the frame (x right, y down, 0-1), so one mask fits any resolution the camera sends and
any input size a model scales it to. `watched_map` rasterizes them for `score_step`'s `watched`; the service
(service/pipeline/masks.py) and `calibrate --mask` draw the same map from the same polygons.
"""

from __future__ import annotations

import json

import cv2
import numpy as np

Point = tuple[float, float]  # x, y as fractions of the frame's width and height
Polygon = list[Point]

MIN_WATCHED = 0.1  # share of the frame a mask must leave: the score needs somewhere to look
SUPERSAMPLE = 8  # polygons are drawn at 8x the model's size and averaged down: edges get their true share


def watched_map(polygons: list[Polygon], height: int, width: int) -> np.ndarray:
    """(height, width) float32: the share of each pixel outside every polygon (1 watched, 0 masked)."""
    big = np.ones((height * SUPERSAMPLE, width * SUPERSAMPLE), np.uint8)
    scale = np.array([width * SUPERSAMPLE, height * SUPERSAMPLE], np.float64)
    # a fraction f is the edge f * n of the pixel grid, -0.5 from the pixel centres fillPoly counts in (with 4
    # bits of sub-pixel precision); fillPoly also fills the pixels its edges pass through: within 1/8 pixel
    shapes = [np.round((np.asarray(p, np.float64) * scale - 0.5) * 16).astype(np.int32) for p in polygons]
    if shapes:
        cv2.fillPoly(big, shapes, 0, shift=4)
    return cv2.resize(big.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)


def watched_fraction(polygons: list[Polygon]) -> float:
    """The share of the frame left to score, on a fixed 240 x 320 grid (the same whatever model scores it)."""
    return float(watched_map(polygons, 240, 320).mean()) if polygons else 1.0


def parse(text: str) -> list[Polygon]:
    """Polygons from JSON, as the service's API takes them (`[[[x, y], ...], ...]`); ValueError saying what is
    wrong, including a mask that leaves under MIN_WATCHED of the frame."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"mask is not JSON: {e}") from None
    if not isinstance(data, list):
        raise ValueError("mask must be a JSON list of polygons, each a list of [x, y] fractions")
    polygons: list[Polygon] = []
    for i, polygon in enumerate(data):
        points = polygon if isinstance(polygon, list) else []
        ok = len(points) >= 3 and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, int | float) and 0 <= v <= 1 for v in p)
            for p in points
        )
        if not ok:
            raise ValueError(f"mask polygon {i} must be 3 or more [x, y] points with x and y in 0-1")
        polygons.append([(float(x), float(y)) for x, y in points])
    share = watched_fraction(polygons)
    if share < MIN_WATCHED:
        raise ValueError(f"the mask leaves {share:.1%} of the frame to score; at least {MIN_WATCHED:.0%} must stay")
    return polygons
