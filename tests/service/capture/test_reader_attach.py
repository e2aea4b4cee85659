"""A standby reader (connected ahead, dropping what it reads) takes over a stream's buffer without reconnecting:
the cluster's make-before-break camera move (service/cluster/actors.py, Coordinator.drain)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import encode_ffv1
from support import wait_for

from model.network import ModelConfig
from service.capture.buffer import FrameBuffer
from service.capture.sources import Reader, ReaderHooks

CONFIG = ModelConfig(base_width=4, height=32, width=48)


def test_standby_reader_reads_without_a_buffer_then_feeds_the_attached_one(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (30, 48, 64, 3), np.uint8)
    clip = encode_ffv1(frames, tmp_path / "clip.avi", fps=20)
    reader = Reader(str(clip), CONFIG, 20.0, None, local_ok=True)  # a local file plays at its own rate
    reader.start()
    try:
        wait_for(lambda: reader.frames_read >= 5, 10, message="standby reading")
        assert reader.state == "live"
        buffer, ups = FrameBuffer(64), []
        reader.attach(buffer, ReaderHooks(up=ups.append))
        got = wait_for(lambda: len(buffer) >= 5 and [buffer.pop() for _ in range(5)], 10, message="frames after attach")
        # numbered from the attach on, consecutive, nothing dropped; the new hooks hear the state
        assert [f.index for f in got] == [0, 1, 2, 3, 4] and buffer.dropped == 0 and ups == [True]
    finally:
        reader.stop(join=True)
