"""Every fast inference path computes the scores of the fp32 path; a missing backend falls back to fp32.

Tolerances (per frame, on real Ped2 frames, the shipped checkpoint or a small trained one):
bf16 keeps 8 significant bits (relative rounding <= 2^-9 ~ 0.2 %) in every convolution, so the
predicted frame moves by ~1e-3 in [-1, 1] pixels. The prediction error behind PSNR is ~0.03-0.1
per pixel on normal frames, but the shipped model predicts normal frames at ~44 dB (RMS error
~0.006), so its MSE moves by a few percent: measured up to 0.08 dB on these frames. We allow
0.2 dB, a third of the shipped calibration's PSNR std (0.62 dB).
Queries are normalized features with the same 2^-9 relative rounding. A trained model's queries sit
very close to their nearest item (the shipped model's feature distance is ~2e-6, a gap of ~1e-3 per
component), so that rounding is of the order of the gap itself and the squared gap moves by a few
percent (2.2 % at most on these frames, for every bf16 path alike): we allow 5 % relative. What
reaches users is the score, bounded below. The
streaming score is a logistic of z-scores of both; with a trained model's calibration (PSNR std
~1 dB or more) it moves by < 0.01: we allow 0.02. (A barely trained model's calibration can have a
PSNR std of 0.01 dB, where any rounding swings the score: the score is compared only for
calibrations with a PSNR std of at least 0.5 dB, e.g. the shipped checkpoint's.)
fp32 graph runtimes (ONNX Runtime, OpenVINO without bf16) differ from eager only in summation
order (~1e-6) and are held to the same bounds. The test-time update flips only for a frame whose
error sits within ~1e-3 of the threshold; the tolerances hold over whole clips with it on.
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model import checkpoint, inference
from model.data import load_clip
from model.network import MemoryAE, ModelConfig
from model.scoring import UPDATE_THRESHOLD, score_clips

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "weights" / "ped2.safetensors"
FRAMES = 80  # per clip; two clips of the Ped2 test split, scored in lockstep (batch 2)

PSNR_ATOL_DB = 0.2
DISTANCE_RTOL = 0.05
SCORE_ATOL = 0.02

PACKAGES = {"openvino": "openvino", "onnxruntime": "onnxruntime"}


def installed(path: str) -> bool:
    """Whether this machine can run the path at all (package present, bf16 on this CPU)."""
    cpu = torch.device("cpu")
    if path in PACKAGES:
        return importlib.util.find_spec(PACKAGES[path]) is not None
    if path == "bf16":
        return inference.bf16_supported(cpu)
    return path == "compile"


@pytest.fixture(scope="module")
def trained(ped2: Path, tmp_path_factory: pytest.TempPathFactory) -> checkpoint.Checkpoint:
    """The shipped checkpoint; where it is absent, a small model trained on two Ped2 clips (seconds)."""
    if SHIPPED.is_file():
        return checkpoint.load(SHIPPED)
    root = tmp_path_factory.mktemp("train")
    (root / "frames").mkdir()
    for name in ("01", "02"):
        (root / "frames" / name).symlink_to(ped2 / "training" / "frames" / name)
    out = tmp_path_factory.mktemp("weights") / "small.safetensors"
    train = str(Path(sys.executable).with_name("train"))
    subprocess.run(
        [train, str(root), "--out", str(out), "--epochs", "1", "--base-width", "8", "--height", "64",
         "--width", "96", "--fps", "10", "--holdout", "0.5"],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return checkpoint.load(out)


@pytest.fixture(scope="module")
def clips(ped2: Path, trained: checkpoint.Checkpoint) -> list:
    out = []
    for name in ("01", "02"):
        clip = load_clip(ped2 / "testing" / "frames" / name, trained.config, trained.fps)
        clip.frames = clip.frames[:FRAMES]
        out.append(clip)
    return out


@pytest.fixture(scope="module")
def reference(trained: checkpoint.Checkpoint, clips: list) -> list:
    net = trained.build("cpu")
    return score_clips(net, clips, UPDATE_THRESHOLD[trained.config.variant], batch_size=2)


@pytest.mark.parametrize("name", ["bf16", "openvino", "onnxruntime", "compile"])
def test_fast_path_scores_equal_fp32(name: str, trained, clips, reference) -> None:
    if not installed(name):
        pytest.skip(f"{name} cannot run on this machine (package or bf16 missing): its fallback is tested below")
    path = inference.build(name, trained.build("cpu"))
    assert path.name == name, f"{name} is installed but fell back: {path.fallback}"
    got = score_clips(path, clips, UPDATE_THRESHOLD[trained.config.variant], batch_size=2)
    cal = trained.calibration
    for ref, fast in zip(reference, got):
        np.testing.assert_allclose(fast.psnr, ref.psnr, atol=PSNR_ATOL_DB, rtol=0)
        np.testing.assert_allclose(fast.distance, ref.distance, rtol=DISTANCE_RTOL, atol=0)
        if cal is not None and cal.psnr_std >= 0.5:
            np.testing.assert_allclose(
                cal.score(fast.psnr, fast.distance), cal.score(ref.psnr, ref.distance), atol=SCORE_ATOL, rtol=0
            )


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["fp32", "fp16", "bf16", "compile"])
def test_cuda_path_scores_equal_cpu_fp32(name: str, trained, clips, reference) -> None:
    """On a GPU (bench/gpu_check.sh; deselected elsewhere): every CUDA path against the CPU fp32 reference.

    fp32 on CUDA may use TF32 convolutions (10-bit mantissa) and fp16 keeps 11 bits, both finer than
    bf16's 8, so the bf16 tolerances above hold for all of them."""
    if not torch.cuda.is_available():
        pytest.fail("the cuda tests need a CUDA device: run them with -m cuda on a machine that has one")
    path = inference.build(name, trained.build("cuda"), "cuda")
    assert path.name == name, f"{name} fell back on CUDA: {path.fallback}"
    got = score_clips(path, clips, UPDATE_THRESHOLD[trained.config.variant], batch_size=2, device="cuda")
    for ref, fast in zip(reference, got):
        np.testing.assert_allclose(fast.psnr, ref.psnr, atol=PSNR_ATOL_DB, rtol=0)
        np.testing.assert_allclose(fast.distance, ref.distance, rtol=DISTANCE_RTOL, atol=0)


def small_net(skips: int | None = None, background: bool = False) -> MemoryAE:
    torch.manual_seed(0)
    net = MemoryAE(ModelConfig(base_width=4, height=32, width=48, skips=skips, background=background)).eval()
    if background:  # a scene with some structure, so a path that forgets it is off by far more than rounding
        net.background.copy_(torch.linspace(-0.8, 0.8, 32 * 48).view(1, 32, 48))
    return net


@pytest.mark.parametrize("name", ["openvino", "onnxruntime"])
def test_missing_package_falls_back_to_fp32(name: str, monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, PACKAGES[name], None)  # `import openvino` now raises ImportError
    with caplog.at_level(logging.WARNING, logger="model.inference"):
        path = inference.build(name, small_net())
    assert path.name == "fp32" and path.requested == name
    assert "not installed" in path.fallback
    assert any("falls back to fp32" in r.message for r in caplog.records)
    assert path.describe() == {"path": "fp32", "requested": name, "detail": "float32 eager", "fallback": path.fallback}


def test_auto_falls_back_when_every_fast_path_fails(monkeypatch, caplog) -> None:
    def broken(net, device):
        raise RuntimeError("compiler exploded")

    for name in inference.AUTO_ORDER["cpu"]:
        if name != "fp32":
            monkeypatch.setitem(inference.BUILDERS, name, broken)
    with caplog.at_level(logging.WARNING, logger="model.inference"):
        path = inference.build("auto", small_net(), "cpu")
    assert path.name == "fp32" and path.requested == "auto"
    assert "compiler exploded" in path.fallback
    assert any("falls back to fp32" in r.message for r in caplog.records)


def test_a_path_that_computes_something_else_is_rejected(monkeypatch) -> None:
    def wrong(net, device):
        def run(x, items):
            out = net(x, items)
            return -out.frame, out.queries

        return run, "sign flipped"

    monkeypatch.setitem(inference.BUILDERS, "bf16", wrong)
    path = inference.build("bf16", small_net())
    assert path.name == "fp32" and "differs from fp32" in path.fallback


def test_bf16_missing_on_this_cpu_falls_back(monkeypatch) -> None:
    monkeypatch.setattr(inference, "bf16_supported", lambda device: False)
    path = inference.build("bf16", small_net())
    assert path.name == "fp32" and "bfloat16" in path.fallback
    assert inference.build("fp16", small_net()).name == "fp32"  # CUDA only


@pytest.mark.parametrize(("skips", "background"), [(None, False), (2, False), (0, False), (None, True)])
def test_auto_picks_a_verified_path_and_unknown_names_fail(skips: int | None, background: bool) -> None:
    path = inference.build("auto", small_net(skips, background))
    assert path.name in inference.AUTO_ORDER["cpu"]
    assert inference.max_difference(path) <= inference.VERIFY_TOLERANCE
    with pytest.raises(ValueError, match="must be one of"):
        inference.build("tensorrt", small_net())


def test_the_check_feeds_a_network_with_a_scene_footage_of_that_scene() -> None:
    """Frames minus the network's scene are what moves in them (blobs, faint noise), not another scene."""
    net = small_net(background=True)
    x, _ = inference._example(net.config, 2, torch.device("cpu"), scene=net.background)
    change = x - net.background.repeat(4, 1, 1)
    assert change.abs().median() < 0.05 and change.abs().max() > 0.3  # mostly the scene, blobs move over it
    other, _ = inference._example(net.config, 2, torch.device("cpu"))
    assert (other - net.background.repeat(4, 1, 1)).abs().median() > 0.1


def test_mixed_forward_keeps_memory_read_in_float32() -> None:
    """Queries and frame come back float32 and the net's own weights are untouched (copies are cast)."""
    net = small_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    path = inference.build("bf16", net)
    x = torch.zeros(1, 4, 32, 48)
    out = path(x, net.items.expand(1, -1, -1))
    assert out.frame.dtype == out.queries.dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net.encoder.stage1[0].weight.dtype == torch.float32


@pytest.mark.skipif(not inference.bf16_supported(torch.device("cpu")), reason="this CPU has no bf16: bf16 falls back")
def test_bf16_on_cpu_is_frozen_and_fused_and_steps_down_when_that_fails(monkeypatch) -> None:
    """Fused, frozen, eager: each step down is taken only when the faster one fails, and all compute the same."""
    net = small_net()
    assert "oneDNN Graph fusion" in inference.build("bf16", net).detail
    real = inference._freeze

    def no_fusion(module, config, device, fuse):
        if fuse:
            raise RuntimeError("LLGA unavailable")
        return real(module, config, device, fuse)

    monkeypatch.setattr(inference, "_freeze", no_fusion)
    path = inference.build("bf16", net)
    assert path.name == "bf16" and path.detail.endswith("TorchScript-frozen")
    assert inference.max_difference(path) <= inference.VERIFY_TOLERANCE

    def no_trace(module, config, device, fuse):
        raise RuntimeError("cannot trace")

    monkeypatch.setattr(inference, "_freeze", no_trace)
    path = inference.build("bf16", net)
    assert path.name == "bf16" and "TorchScript" not in path.detail
    assert inference.max_difference(path) <= inference.VERIFY_TOLERANCE


@pytest.mark.skipif(not inference.bf16_supported(torch.device("cpu")), reason="this CPU has no bf16: bf16 falls back")
def test_frozen_scores_do_not_depend_on_whether_a_batch_size_was_seen_before() -> None:
    """TorchScript's first call at a new shape runs unoptimized, rounding bf16 differently: it must not count."""
    net = small_net()
    path = inference.build("bf16", net)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(5, 4, 32, 48, generator=g) * 2 - 1  # batch 5: never seen while building the path
    items = net.items.expand(5, -1, -1)
    first = path(x, items)
    again = path(x, items)
    assert torch.equal(first.frame, again.frame) and torch.equal(first.queries, again.queries)
    one = torch.cat([path(x[i : i + 1], items[i : i + 1]).frame for i in range(5)])
    assert torch.equal(one, again.frame)  # and batch 5 computes what batch 1 does
    window = torch.cat([x, x[:, :1]], dim=1)[:, :4]  # the engine's layout: past frames sliced off a window
    assert not window.is_contiguous()
    assert torch.equal(path(window, items).frame, again.frame)  # a new layout's first call counts no more


def test_the_verification_input_looks_like_footage() -> None:
    """Smooth in space, close from frame to frame, in range and fixed by its seed: independent noise in every
    pixel (what the check used before) ran a bf16 path 0.19 off fp32 that held-out frames put at 0.01."""
    config = ModelConfig(base_width=4, height=32, width=48, memory_size=4)
    x, items = inference._example(config, 3, torch.device("cpu"), seed=1)
    assert x.shape == (3, config.input_frames, 32, 48) and items.shape == (3, 4, config.feature_dim)
    assert x.abs().max() <= 1
    assert (x[..., 1:] - x[..., :-1]).abs().mean() < 0.1  # neighbours alike (independent uniform noise: 0.67)
    assert (x[:, 1:] - x[:, :-1]).abs().mean() < 0.1  # so are consecutive frames
    assert x.std() > 0.2  # and there is a scene to see
    torch.testing.assert_close(inference._example(config, 3, torch.device("cpu"), seed=1)[0], x)
    assert not torch.equal(inference._example(config, 3, torch.device("cpu"), seed=2)[0], x)
