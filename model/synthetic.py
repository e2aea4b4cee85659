"""Synthetic anomalies on normal footage: validation without test labels.

A user who owns only normal footage of a camera still needs to know whether a model catches
something unusual there, and we need the same to pick epochs, scales and thresholds without
looking at a test split. Each synthetic clip is a held-out normal clip with one *event*, a
contiguous stretch of frames labelled anomalous, of one of these kinds:

- ``paste``: an object cut from the clip itself (the region that differs most from the clip's
  background) pasted in and moved across the scene at 1.5-8 times walking speed;
- ``skip``: frames skipped, 2-5 at a time, so every moving thing in the scene runs (a time-lapse stretch);
- ``blur``: a box of the scene blurred (a smeared, unfamiliar texture);
- ``noise``: a box of the scene covered with pixel noise;
- ``rush``: the busier day below, whose borrowed walkers move 2-4 times too fast inside the event:
  real people, whole, at a cyclist's pace among people walking normally (needs two clips);
- ``vehicle`` (opt-in, see OPT_IN): an object the size of a vehicle (a box a fifth of the frame high and
  a sixth wide: a group of walkers, or a walker with what is around) moved rigidly at 2-4 times walking
  speed, the pace of the bikes, carts and wheelchairs in UCSD's description of its anomalies, along the
  rows where the clip moves (the walkway, not the lawn). It is composited as `model.crowd` composites
  walkers, its mask grown and feathered, so the pavement around comes along and no cut edge shows. It
  fills the windows it crosses with foreground, as those do, where a pedestrian-sized cut-out does not.

Normal footage varies too, and a score that alarms on that variation is useless on a live camera.
So validation also gets a *benign* copy of each normal clip, labelled normal throughout:

- ``exposure``: the whole clip up to 10 % brighter or darker, with a little more contrast or less
  (another hour of the day, an auto-exposure step);
- ``reframe``: the camera aimed a few pixels off and zoomed 1-3 % (re-mounted after maintenance);
- ``compression``: every frame through JPEG at quality 50-75 (a camera streaming at a lower bitrate;
  at the model's small frame size lower qualities leave blocks no real downscaled stream shows);
- ``sensor``: faint pixel noise over the whole frame (more gain at dusk).

- ``crowd``: a busier day, the walkers of the next held-out clip laid over this one at their own
  places and times (`model.crowd`; one clip lends its second half's walkers to its first half).

The camera changes move nothing in the scene, so a setting that alarms on them alarms on the camera,
not on what it sees; the crowd moves nothing at the wrong speed, so one that alarms on it alarms on
an ordinary busy hour. (A single cut-out person slid across the frame was tried as a busier day
before and dropped: at the model's scale its edges are themselves an anomaly. `model.crowd` takes
each walker with the pavement around it, which both clips share, so there is no edge.)

Everything is drawn from one seed: the same clips and seed give the same events, bit for bit.

A camera with a mask (`model.masks`: the parts of the picture its score ignores) gets the same events, but a
frame whose change lies mostly in the masked part is labelled normal (`in_view`): the operator said what
happens there does not matter, and a score that cannot see it must not be counted as missing it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from model import crowd
from model.camera import BENIGN as CAMERA_CHANGES
from model.camera import camera_change
from model.data import Clip

ONE_CLIP_KINDS: tuple[str, ...] = ("paste", "skip", "blur", "noise")
KINDS: tuple[str, ...] = (*ONE_CLIP_KINDS, "rush")  # rush borrows another clip's walkers: two clips or more
# Kinds made but validated on only when asked for ('all,vehicle'): on Ped2's held-out clips the shipped setting
# catches 99.2 % of vehicle frames, so they cannot tell settings apart (docs/experiments.md, "Vehicle-sized events").
OPT_IN: tuple[str, ...] = ("vehicle",)
BENIGN: tuple[str, ...] = (*CAMERA_CHANGES, "crowd")
# Benign kinds that are the scene on another day, not the camera: their frames join the normal frames
# the alert thresholds are fitted on (model.validation.choose), so busy hours do not raise alerts.
BUSY: tuple[str, ...] = ("crowd",)
# How strong each kind's event is, drawn per event from barely visible to obvious. Ped2's real events
# (bikes, skaters, carts) move at 2-3x walking speed: events that are all obvious (3-8x, step 3-5,
# noise sigma 10-25 before) let every setting score ~99.8 % on three of the four kinds, so validation
# had nothing to choose a setting with but the blur events.
PASTE_SPEED = (0.0075, 0.04)  # share of the frame width per frame: 1.5-8x a walker (~0.5 %)
VEHICLE_SHARE = (5, 6)  # a fifth of the frame high, a sixth wide: a vehicle among walkers
VEHICLE_SPEED = (0.01, 0.02)  # 2-4x a walker: a bike or a cart, not a thrown object
SKIP_STEP = (2, 5)  # frames advanced per frame inside the event
BLUR_SIGMA = (1.0, 4.0)  # pixels
NOISE_SIGMA = (4.0, 25.0)  # grey levels
RUSH_SPEED = (2, 4)  # times walking speed of the borrowed walkers inside a rush event (Ped2's bikes: ~2-3x)
PER_KIND = 4  # events of each kind per held-out clip
IN_VIEW = 0.5  # share of an event frame's change that must fall where a masked camera's score looks
__all__ = [
    "BENIGN",
    "BUSY",
    "KINDS",
    "OPT_IN",
    "SyntheticClip",
    "benign",
    "camera_change",
    "in_view",
    "make",
    "min_frames",
    "parse_changes",
    "parse_kinds",
]


KINDS_HELP = (  # the --kinds option of train and calibrate
    f"Synthetic anomaly kinds validation makes: 'all' ({','.join(KINDS)}) or some of them, and the opt-in "
    f"{','.join(OPT_IN)} (e.g. 'all,vehicle'; the anomalies that matter on this camera: they decide how PSNR and the "
    "memory distance are weighed)"
)
CHANGES_HELP = (  # the --augment-kinds option of train
    f"Benign camera changes --augment draws from: 'all' ({','.join(CAMERA_CHANGES)}) or some of them "
    "(e.g. 'exposure,reframe,sensor': no JPEG; on Ped2 that cost 2-3 points of validation AUC, docs/experiments.md)"
)
DRAWS_HELP = (  # the --draws option of train and calibrate
    "Draws of synthetic anomalies pooled (the validation seed, +1, ...): one draw's AUC moves 1-2.5 points from "
    "seed to seed, so rank candidates on 3; each draw adds the time of one"
)


def parse_kinds(text: str) -> tuple[str, ...]:
    """A comma-separated list of kinds, 'all' standing for KINDS (a command-line option) -> the kinds, in
    KINDS then OPT_IN order."""
    return _parse_names(text, KINDS, (*KINDS, *OPT_IN), "anomaly kinds")


def parse_changes(text: str) -> tuple[str, ...]:
    """A comma-separated list of benign camera changes, 'all' standing for all of them (`train --augment-kinds`)
    -> the changes, in CAMERA_CHANGES order."""
    return _parse_names(text, CAMERA_CHANGES, CAMERA_CHANGES, "camera changes")


def _parse_names(text: str, everything: Sequence[str], known: Sequence[str], what: str) -> tuple[str, ...]:
    asked = {k.strip() for k in text.split(",") if k.strip()}
    if "all" in asked:
        asked = (asked - {"all"}) | set(everything)
    unknown = asked - set(known)
    if unknown or not asked:
        raise ValueError(f"{what} must be 'all' or some of {', '.join(known)}; got {text!r}")
    return tuple(k for k in known if k in asked)


@dataclass
class SyntheticClip:
    name: str
    kind: str
    frames: np.ndarray  # (T, H, W, ch) uint8, like Clip.frames
    labels: np.ndarray  # (T,) bool: True inside the event
    fps: float | None = None

    def as_clip(self) -> Clip:
        return Clip(self.name, self.frames, self.fps)


def _event_span(length: int, rng: np.random.Generator, lead: int) -> tuple[int, int]:
    """An event of 15-35 % of the clip, after `lead` normal frames, ending before the clip does."""
    duration = int(rng.integers(max(3, length * 15 // 100), max(4, length * 35 // 100) + 1))
    start = int(rng.integers(lead, max(lead + 1, length - duration - lead // 2)))
    return start, min(length, start + duration)


def _object_patch(
    frames: np.ndarray, rng: np.random.Generator, share: tuple[int, int] = (6, 12)
) -> tuple[np.ndarray, np.ndarray]:
    """The object in one frame that differs most from the clip's background (its median): usually a person.

    `share`: the patch is 1/share[0] of the frame high and 1/share[1] wide (6, 12: a pedestrian at Ped2's
    scale). Returns the patch and its mask: only the object's own pixels are pasted, not a box of pavement
    around it, so what moves wrongly is an object, not a rectangle that no camera would show.
    """
    t = int(rng.integers(0, len(frames)))
    frame = frames[t].astype(np.float32)
    background = np.median(frames[:: max(1, len(frames) // 32)], axis=0).astype(np.float32)
    height, width = frame.shape[:2]
    ph, pw = max(8, height // share[0]), max(6, width // share[1])
    difference = np.abs(frame - background).mean(axis=-1)
    energy = cv2.boxFilter(difference, -1, (pw, ph), normalize=True)
    y, x = np.unravel_index(int(np.argmax(energy)), energy.shape)
    y0 = int(np.clip(y - ph // 2, 0, height - ph))
    x0 = int(np.clip(x - pw // 2, 0, width - pw))
    box = difference[y0 : y0 + ph, x0 : x0 + pw]
    mask = cv2.dilate((box > max(12.0, float(box.max()) / 3)).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return frames[t, y0 : y0 + ph, x0 : x0 + pw].copy(), mask


def _paste(frames: np.ndarray, span: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Move an object across the frame at 0.75-4 % of the frame width per frame (walkers: ~0.5 %)."""
    out = frames.copy()
    patch, mask = _object_patch(frames, rng)
    height, width = frames.shape[1:3]
    ph, pw = patch.shape[:2]
    speed = float(rng.uniform(*PASTE_SPEED)) * width * (1 if rng.random() < 0.5 else -1)
    y = float(rng.integers(0, height - ph + 1))
    x = float(rng.integers(0, width - pw + 1))
    dy = float(rng.uniform(-0.3, 0.3)) * abs(speed)
    for t, yi, xi in _track(span, (y, x), (dy, speed), (height - ph, width - pw)):
        target = out[t, yi : yi + ph, xi : xi + pw]
        target[mask] = patch[mask]
    return out


def _track(
    span: tuple[int, int], start: tuple[float, float], step: tuple[float, float], bound: tuple[int, int]
) -> Iterator[tuple[int, int, int]]:
    """(frame, row, column) of a box moved by `step` (dy, dx) per frame from `start` (y, x) through the event,
    bouncing off the edges (its corner stays within 0..`bound`) so it stays in view for the whole event."""
    (y, x), (dy, dx) = start, step
    for t in range(*span):
        if not 0 <= x + dx <= bound[1]:
            dx = -dx
        if not 0 <= y + dy <= bound[0]:
            dy = -dy
        x, y = x + dx, y + dy
        yield t, round(y), round(x)


def _vehicle(frames: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A vehicle-sized box of the clip's own footage (`_object_patch` at VEHICLE_SHARE) and its (ph, pw, 1) alpha:
    1 on the object, `model.crowd`'s feathered ring of pavement around it, 0 on the box's rim (no cut edge)."""
    patch, mask = _object_patch(frames, rng, VEHICLE_SHARE)
    ph, pw = patch.shape[:2]
    rim = np.minimum.outer(
        np.minimum(np.arange(ph), np.arange(ph)[::-1]), np.minimum(np.arange(pw), np.arange(pw)[::-1])
    )
    return patch, crowd.feather(mask[None])[0] * np.clip(rim / 3, 0, 1)[..., None]


def _glide(frames: np.ndarray, span: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A `_vehicle` laid over the frames, moved rigidly at VEHICLE_SPEED along the rows where the clip moves."""
    patch, alpha = _vehicle(frames, rng)
    ph, pw = patch.shape[:2]
    height, width = frames.shape[1:3]
    speed = float(rng.uniform(*VEHICLE_SPEED)) * width * (1 if rng.random() < 0.5 else -1)
    y = float(_busiest_box(frames, (ph, pw))[0])
    x = float(rng.integers(0, width - pw + 1))
    dy = float(rng.uniform(-0.1, 0.1)) * abs(speed)
    out = frames.copy()
    for t, yi, xi in _track(span, (y, x), (dy, speed), (height - ph, width - pw)):
        target = out[t, yi : yi + ph, xi : xi + pw]
        target[...] = np.clip(alpha * patch + (1 - alpha) * target + 0.5, 0, 255).astype(np.uint8)
    return out


def _skip(frames: np.ndarray, span: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Inside the event the clip advances `step` frames per frame (a runner); after it, normal speed again.

    The clip gets shorter by the frames skipped; returns the frames and their labels."""
    step = int(rng.integers(SKIP_STEP[0], SKIP_STEP[1] + 1))
    start, end = span
    length = max(1, min(end - start, (len(frames) - start - 20) // step))  # normal frames after it too
    source = np.concatenate(
        [np.arange(start), start + step * np.arange(length), np.arange(start + step * length, len(frames))]
    )
    labels = np.zeros(len(source), bool)
    labels[start : start + length] = True
    return frames[source], labels


def _busiest_box(frames: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(y, x, h, w) of the box where the clip moves most: where people walk, not the empty pavement."""
    motion = np.abs(np.diff(frames[:: max(1, len(frames) // 32)].astype(np.float32), axis=0)).mean(axis=(0, -1))
    height, width = motion.shape
    h, w = min(size[0], height), min(size[1], width)
    energy = cv2.boxFilter(motion, -1, (w, h), normalize=True)
    y, x = np.unravel_index(int(np.argmax(energy)), energy.shape)
    return int(np.clip(y - h // 2, 0, height - h)), int(np.clip(x - w // 2, 0, width - w)), h, w


def _region(frames: np.ndarray, span: tuple[int, int], rng: np.random.Generator, kind: str) -> np.ndarray:
    """Blur or noise in a box where the scene moves (a random box there would often be empty pavement)."""
    out = frames.copy()
    height, width = frames.shape[1:3]
    y, x, h, w = _busiest_box(frames[span[0] : span[1]], (height // 4, width // 6))
    region = out[span[0] : span[1], y : y + h, x : x + w]
    if kind == "blur":
        sigma = float(rng.uniform(*BLUR_SIGMA))
        for t in range(len(region)):
            region[t] = cv2.GaussianBlur(region[t], (0, 0), sigmaX=sigma).reshape(region[t].shape)
    else:
        noise = rng.normal(0, float(rng.uniform(*NOISE_SIGMA)), region.shape)
        region[...] = np.clip(region.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return out


def _rush(
    base: np.ndarray, donor: np.ndarray, span: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The donor's walkers over the base (model.crowd) at their own pace, `speed` times faster inside the
    event, then at their own pace again. Shortened to what the donor can supply; returns frames, labels."""
    speed = int(rng.integers(RUSH_SPEED[0], RUSH_SPEED[1] + 1))
    start, end = span
    length = max(1, min(end - start, (len(donor) - start - 20) // speed))  # normal frames after it too
    t = np.arange(len(base))
    source = np.where(t < start, t, np.where(t < start + length, start + speed * (t - start), t + (speed - 1) * length))
    kept = int((source < len(donor)).sum())  # source only grows: the first `kept` frames
    frames = crowd.busier(base[:kept], donor[source[:kept]])
    return frames, (t[:kept] >= start) & (t[:kept] < start + length)


def benign(clips: Sequence[Clip], seed: int = 0, crowd_copies: bool = True) -> list[SyntheticClip]:
    """One copy of each normal clip per benign kind: normal variation, every frame labelled normal.

    `crowd` lays the next clip's walkers over each clip (a single clip: its own second half over its first).
    It draws nothing from the seed; `crowd_copies=False` leaves it out (another draw's copies would repeat it)."""
    rng = np.random.default_rng(seed + 1_000_003)  # its own stream: adding benign clips leaves events unchanged
    out = [
        SyntheticClip(
            f"{c.name}-{kind}", kind, camera_change(c.frames, kind, rng), np.zeros(len(c.frames), bool), c.fps
        )
        for c in clips
        for kind in CAMERA_CHANGES
    ]
    for i, c in enumerate(clips if crowd_copies else []):
        if len(clips) > 1:
            base, donor = c.frames, clips[(i + 1) % len(clips)].frames
        else:
            half = len(c.frames) // 2
            base, donor = c.frames[:half], c.frames[half : 2 * half]
        frames = crowd.busier(base, donor)
        out.append(SyntheticClip(f"{c.name}-crowd", "crowd", frames, np.zeros(len(frames), bool), c.fps))
    return out


def min_frames(window: int) -> int:
    """The shortest clip that gets synthetic events: normal frames before, during and after."""
    return 4 * window + 8


def in_view(reference: np.ndarray, frames: np.ndarray, watched: np.ndarray) -> np.ndarray:
    """Per frame (T,): whether at least IN_VIEW of what the event changed (|frames - reference|, summed over the
    picture) lies where the score looks (`watched`, (H, W) shares, model.masks.watched_map). A frame the event
    left unchanged stays in view: the mask takes nothing from it."""
    change = np.abs(frames.astype(np.int16) - reference.astype(np.int16)).sum(axis=-1, dtype=np.float32)  # (T, H, W)
    seen = np.einsum("thw,hw->t", change, watched.astype(np.float32))
    return seen >= IN_VIEW * change.sum(axis=(1, 2))


def make(
    clips: Sequence[Clip],
    window: int,
    seed: int = 0,
    per_kind: int = PER_KIND,
    watched: np.ndarray | None = None,
) -> list[SyntheticClip]:
    """`per_kind` synthetic clips of each kind from every normal clip, one event each.

    `window` is the model's window: every event starts after at least two windows of normal
    frames, so a stream has normal history before it, as a real camera would.
    `watched` (H, W): the camera's mask; the events drawn are the same, their frames mostly in the masked part
    are labelled normal (`in_view`, against the clip as it would have been without the event).
    """
    rng = np.random.default_rng(seed)
    out: list[SyntheticClip] = []

    def add(clip: Clip, name: str, kind: str, frames: np.ndarray, labels: np.ndarray, reference: np.ndarray) -> None:
        if watched is not None:
            labels = labels & in_view(reference[: len(frames)], frames, watched)
        out.append(SyntheticClip(f"{clip.name}-{name}", kind, frames, labels, clip.fps))

    for clip in clips:
        n = len(clip.frames)
        if n < min_frames(window):
            continue
        for kind in ONE_CLIP_KINDS:
            for k in range(per_kind):
                span = _event_span(n, rng, lead=2 * window + 2)
                labels = np.zeros(n, bool)
                labels[span[0] : span[1]] = True
                if kind == "paste":
                    frames = _paste(clip.frames, span, rng)
                elif kind == "skip":
                    frames, labels = _skip(clip.frames, span, rng)
                else:
                    frames = _region(clip.frames, span, rng, kind)
                add(clip, f"{kind}{k}", kind, frames, labels, clip.frames)
    rng = np.random.default_rng(seed + 2_000_003)  # its own stream: the one-clip events above stay as they were
    long = [c for c in clips if len(c.frames) >= min_frames(window)]
    for i, clip in enumerate(long if len(long) > 1 else []):
        donor = long[(i + 1) % len(long)].frames
        for k in range(per_kind):
            frames, labels = _rush(clip.frames, donor, _event_span(len(clip.frames), rng, 2 * window + 2), rng)
            # without the event: the same walkers at their own pace (only worked out for a mask)
            normal = crowd.busier(clip.frames[: len(frames)], donor[: len(frames)]) if watched is not None else frames
            add(clip, f"rush{k}", "rush", frames, labels, normal)
    rng = np.random.default_rng(seed + 4_000_003)  # its own stream too: the kinds above stay as they were
    for clip in long:
        for k in range(per_kind):
            span = _event_span(len(clip.frames), rng, lead=2 * window + 2)
            labels = np.zeros(len(clip.frames), bool)
            labels[span[0] : span[1]] = True
            frames = _glide(clip.frames, span, rng)
            add(clip, f"vehicle{k}", "vehicle", frames, labels, clip.frames)
    return out
