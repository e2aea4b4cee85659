"""Footage in, model-ready frames out.

A *clip* is one continuous piece of footage: a folder of frame images (the Ped2 layout,
``training/frames/01/000.jpg``) or one video file. Frames are kept as small uint8 arrays at
the model's input size (Ped2's 2,550 training frames take 60 MB at 128x192 grey), and turned
into [-1, 1] float tensors only when batched. `preprocess` is the single definition of the
model's input format: the service calls it on every live frame, so scores match `evaluate`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from model.camera import BENIGN, camera_change
from model.crowd import background, busier
from model.network import ModelConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".ts"}


class DataError(ValueError):
    """Footage that cannot be read: says which file and why."""


@dataclass
class Clip:
    name: str
    frames: np.ndarray  # (T, H, W, ch) uint8 at the model's input size
    fps: float | None  # native frame rate when the source records one


def preprocess(frame: np.ndarray, config: ModelConfig, out: np.ndarray | None = None) -> np.ndarray:
    """A decoded BGR (or grey) frame -> (H, W, ch) uint8 at the model's size and colour."""
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if config.channels == 1 and frame.shape[2] == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    elif config.channels == 3 and frame.shape[2] == 1:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    resized = cv2.resize(frame, (config.width, config.height), interpolation=cv2.INTER_AREA)
    resized = resized.reshape(config.height, config.width, config.channels)
    if out is None:
        return resized
    out[...] = resized
    return out


def to_tensor(frames: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """(..., T, H, W, ch) uint8 -> (..., T*ch, H, W) float in [-1, 1], frames stacked on channels."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    x = x.movedim(-1, -3).flatten(-4, -3)  # (..., T*ch, H, W)
    return x.float().div_(127.5).sub_(1.0)


def empty_scene(clips: Sequence[Clip]) -> Tensor:
    """The camera's empty scene, (ch, H, W) in [-1, 1]: the per-pixel median of frames spread over every clip,
    so nobody who stands still in one clip stays in it."""
    frames = np.concatenate([c.frames[:: max(1, len(c.frames) // 16)] for c in clips])
    return torch.from_numpy(background(frames)).permute(2, 0, 1).div(127.5).sub(1)


def list_clips(root: Path) -> list[Path]:
    """Clip sources under `root`: frame folders (sorted) or video files (sorted)."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    if root.is_file():
        return [root]
    if (root / "frames").is_dir():  # Ped2 layout: training/frames/01 ...
        root = root / "frames"
    entries = sorted(root.iterdir())
    folders = [p for p in entries if p.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir())]
    videos = [p for p in entries if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
    if folders:
        return folders
    if videos:
        return videos
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in entries):
        return [root]  # a single folder of frames
    raise DataError(f"{root}: no frame folders or video files ({', '.join(sorted(VIDEO_SUFFIXES))}) found")


def iter_video(path: Path) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"{path}: not a video OpenCV can decode")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def video_fps(path: Path) -> float | None:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    capture.release()
    return float(fps) if fps and 0 < fps < 1000 else None


def load_clip(source: Path, config: ModelConfig, fps: float | None = None) -> Clip:
    """Decode and preprocess one clip (frame folder or video file)."""
    source = Path(source)
    if source.is_dir():
        files = sorted(f for f in source.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        frames = []
        for f in files:
            image = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if image is None:
                raise DataError(f"{f}: not an image OpenCV can decode")
            frames.append(preprocess(image, config))
        native = fps
    else:
        frames = [preprocess(f, config) for f in iter_video(source)]
        native = video_fps(source) or fps
    if not frames:
        raise DataError(f"{source}: no frames")
    return Clip(source.stem if source.is_file() else source.name, np.stack(frames), native)


def load_clips(root: Path, config: ModelConfig, fps: float | None = None, progress: bool = False) -> list[Clip]:
    from tqdm import tqdm

    sources = list_clips(root)
    return [load_clip(s, config, fps) for s in tqdm(sources, desc=f"load {root}", unit="clip", disable=not progress)]


def resample(clip: Clip, fps: float) -> Clip:
    """Keep frames about 1/fps apart, as a stream samples a faster camera: the motion between the frames the
    model sees, and so its PSNR, must be the live one. A clip no faster than 1.1 x fps keeps every frame (the
    service's rule)."""
    if clip.fps is None or clip.fps <= 1.1 * fps:
        return clip
    slot = np.floor(np.arange(len(clip.frames)) * (fps / clip.fps) + 1e-9)  # the 1/fps slot each frame falls in
    keep = np.flatnonzero(np.diff(slot, prepend=-1) > 0)  # the first frame of every slot
    return Clip(clip.name, clip.frames[keep], fps)


def split_holdout(clips: Sequence[Clip], fraction: float) -> tuple[list[Clip], list[Clip]]:
    """Keep normal footage the model never trains on, for calibrating the streaming normalizer.

    Whole clips are held out when there are several (the last ceil(fraction * n)); a single clip
    gives up its tail instead.
    """
    if fraction <= 0:
        return list(clips), []
    if len(clips) >= 2:
        k = min(len(clips) - 1, max(1, int(np.ceil(fraction * len(clips)))))
        return list(clips[:-k]), list(clips[-k:])
    (clip,) = clips
    cut = int(len(clip.frames) * (1 - fraction))
    return [Clip(clip.name, clip.frames[:cut], clip.fps)], [Clip(clip.name + "-holdout", clip.frames[cut:], clip.fps)]


class WindowDataset(torch.utils.data.Dataset):
    """Every window of `config.window` consecutive frames of every clip: (input, target) tensors.

    `augment` (a probability): that share of windows get one random benign camera change of `changes`
    (exposure, re-aim, compression, sensor noise; model.camera), the same on all their frames, so motion is
    untouched and only the camera differs. `crowd` (a probability): that share of windows get the walkers of a
    random window of another clip laid over them (model.crowd), so a busier day is normal too. `reverse` (a
    probability): that share of windows play backwards, a walker crossing the other way at the same speed (not
    in the paper). Drawn from `seed`: the same order gives the same windows; an option left at 0 draws nothing,
    so the others' windows do not change.
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        config: ModelConfig,
        augment: float = 0.0,
        seed: int = 0,
        crowd: float = 0.0,
        changes: Sequence[str] = BENIGN,
        reverse: float = 0.0,
    ) -> None:
        self.clips = list(clips)
        self.config = config
        self.reverse = reverse
        self.index = [(i, t) for i, c in enumerate(self.clips) for t in range(len(c.frames) - config.window + 1)]
        self.augment = augment
        self.changes = tuple(changes)
        self.crowd = crowd if len(self.clips) > 1 else 0.0  # one clip has no other day to borrow walkers from
        self.backgrounds = [background(c.frames) for c in self.clips] if self.crowd else []
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        clip, t = self.index[i]
        window = self.clips[clip].frames[t : t + self.config.window]  # (window, H, W, ch)
        if self.crowd and self.rng.random() < self.crowd:
            other = int(self.rng.choice([i for i in range(len(self.clips)) if i != clip]))
            u = int(self.rng.integers(0, len(self.clips[other].frames) - self.config.window + 1))
            donor = self.clips[other].frames[u : u + self.config.window]
            window = busier(window, donor, self.backgrounds[other], self.backgrounds[clip])
        if self.augment and self.rng.random() < self.augment:
            window = camera_change(window, str(self.rng.choice(self.changes)), self.rng)
        if self.reverse and self.rng.random() < self.reverse:
            window = np.ascontiguousarray(window[::-1])  # (window, H, W, ch): the last frame is now the past's
        return window_tensors(window, self.config)


def window_tensors(
    window: np.ndarray, config: ModelConfig, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """(..., window, H, W, ch) uint8 -> input (..., T*ch, H, W) and target (..., ch, H, W): the one split rule.
    Of a window `frame_step` > 1 frames apart only every step-th frame reaches the network."""
    x = to_tensor(window[..., :: config.frame_step, :, :, :], device)
    if config.variant == "reconstruction":
        return x, x
    split = config.past_frames * config.channels
    return x[..., :split, :, :], x[..., split:, :, :]
