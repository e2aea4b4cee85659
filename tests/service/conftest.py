"""Real parts for the service tests: a small checkpoint trained on Ped2, lossless clips of Ped2
test frames, GStreamer's RTSP server (Debian packages: scripts/apt-packages.txt) and `serve` itself
as a subprocess on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

HERE = Path(__file__).parent
SYSTEM_PYTHON = "/usr/bin/python3"
SERVE = str(Path(sys.executable).with_name("serve"))
CLIP_FRAMES = 60  # Ped2 testing clip 01, first 6 s at 10 fps
LOOPBACK_SOURCES = '["private", "public", "127.0.0.0/8"]'  # source policy of test servers: plus loopback cameras


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quiet_env(**extra: str) -> dict[str, str]:
    """One torch thread: the CI box is small and a model may be training beside the tests."""
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(scope="session")
def models_dir(ped2: Path, tmp_path_factory) -> Path:
    """A tiny checkpoint (seconds to train) from two Ped2 training clips, recorded at 10 fps."""
    root = tmp_path_factory.mktemp("train")
    (root / "frames").mkdir()
    for name in ("01", "02"):
        (root / "frames" / name).symlink_to(ped2 / "training" / "frames" / name)
    out = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    train = str(Path(sys.executable).with_name("train"))
    subprocess.run(
        [train, str(root), "--out", str(out), "--epochs", "1", "--base-width", "4", "--height", "32",
         "--width", "48", "--fps", "10"],
        check=True, env=quiet_env(), capture_output=True, timeout=600,
    )  # fmt: skip
    return out.parent


@pytest.fixture(scope="session")
def clip_frames(ped2: Path) -> np.ndarray:
    files = sorted((ped2 / "testing" / "frames" / "01").glob("*.jpg"))[:CLIP_FRAMES]
    return np.stack([cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files])


def encode_h264_lossless(frames: np.ndarray, path: Path, fps: float = 10) -> Path:
    """H.264 lossless RGB (x264rgb, qp 0) in .mkv: what the RTSP server streams unchanged."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg (Debian package) is needed to encode lossless H.264 test clips")
    h, w = frames.shape[1:3]
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
         "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libx264rgb", "-qp", "0", "-preset", "ultrafast",
         "-g", "10", "-bf", "0", str(path)],
        input=frames.tobytes(), check=True, timeout=120,
    )  # fmt: skip
    return path


def decode(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return np.stack(frames)


@pytest.fixture(scope="session")
def h264_clip(clip_frames: np.ndarray, tmp_path_factory) -> Path:
    path = encode_h264_lossless(clip_frames, tmp_path_factory.mktemp("clips") / "ped2-01.mkv")
    assert np.array_equal(decode(path), clip_frames), "the H.264 test clip is not lossless"
    return path


def encode_ffv1(frames: np.ndarray, path: Path, fps: float = 10) -> Path:
    """FFV1 in .avi through OpenCV's own writer (lossless for BGR): what the upload tests post."""
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="session")
def ffv1_clip(clip_frames: np.ndarray, tmp_path_factory) -> Path:
    path = encode_ffv1(clip_frames, tmp_path_factory.mktemp("clips") / "ped2-01.avi")
    assert np.array_equal(decode(path), clip_frames), "OpenCV's FFV1 writer was lossy"
    return path


class RtspServer:
    def __init__(self, clip: Path, port: int | None = None) -> None:
        self.clip = clip
        self.port = port or free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/clip"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RtspServer:
        if not Path(SYSTEM_PYTHON).exists():
            pytest.skip("Debian's python3 with python3-gi is needed for the RTSP server")
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(HERE / "rtsp_server.py"), "--port", str(self.port), str(self.clip)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            err = self.proc.stderr.read()
            self.proc.kill()
            if "GstRtspServer" in err or "No module named 'gi'" in err:
                pytest.skip(f"GStreamer RTSP server missing (bash scripts/setup.sh test installs it): {err[-300:]}")
            raise RuntimeError(f"RTSP server did not start: {err}")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def rtsp_factory() -> Iterator:
    servers: list[RtspServer] = []

    def make(clip: Path, port: int | None = None) -> RtspServer:
        servers.append(RtspServer(clip, port).start())
        return servers[-1]

    yield make
    for s in servers:
        s.kill()


@dataclass
class Server:
    proc: subprocess.Popen
    base: str
    port: int
    data_dir: Path
    log: Path
    token: str | None = None

    @property
    def ws_base(self) -> str:
        return self.base.replace("http://", "ws://")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers=self.headers(), timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def serve_factory(models_dir: Path, tmp_path: Path) -> Iterator:
    """Start `serve` (a real uvicorn) with the given flags; waits for /readyz. Inference is fp32: the parity
    tests compare with the fp32 reference at 1e-3 (the fast paths are checked in test_inference)."""
    servers: list[Server] = []

    def start(*flags: str, token: str | None = None, data_dir: Path | None = None) -> Server:
        port = free_port()
        data = data_dir or tmp_path / f"data-{len(servers)}"
        log = tmp_path / f"serve-{len(servers)}.log"
        env = quiet_env(**({"MNAD_API_TOKEN": token} if token else {}))
        cmd = [SERVE, "--port", str(port), "--models-dir", str(models_dir), "--data-dir", str(data),
               "--threads", "1", "--device", "cpu", "--inference", "fp32", *flags]  # fmt: skip
        if "--source-networks" not in flags:  # the test cameras listen on loopback: allowed explicitly
            cmd += ["--source-networks", LOOPBACK_SOURCES]
        proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        server = Server(proc, f"http://127.0.0.1:{port}", port, data, log, token)
        servers.append(server)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{server.base}/readyz", timeout=2).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"serve not ready in 60 s: {log.read_text()[-2000:]}")

    yield start
    for s in servers:
        s.stop()
