"""A short real training run on real video files, seeded reproducibility, and --resume."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import typer

from model import checkpoint, synthetic
from model.commands.evaluate import main as evaluate
from model.commands.train import main as train
from model.data import Clip, DataError, empty_scene, list_clips, load_clips, split_holdout
from model.network import MemoryAE, ModelConfig

TINY = {"base_width": 2, "height": 16, "width": 24, "epochs": 1, "batch_size": 2, "device": "cpu", "precision": "fp32"}


def write_video(path: Path, frames: int, fps: float, seed: int) -> None:
    """A moving bright square over noise, encoded as MJPEG in AVI: real codec, real container."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (48, 32))
    assert writer.isOpened()
    for t in range(frames):
        image = rng.integers(0, 40, (32, 48, 3), dtype=np.uint8)
        image[8:16, t % 40 : t % 40 + 8] = 220
        writer.write(image)
    writer.release()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for i in range(3):
        write_video(root / f"cam{i}.avi", 14, 15.0, seed=i)
    return root


def test_video_folder_is_read_with_its_frame_rate(videos: Path) -> None:
    config = ModelConfig(base_width=2, height=16, width=24)
    clips = load_clips(videos, config)
    assert [c.name for c in clips] == ["cam0", "cam1", "cam2"]
    assert clips[0].frames.shape == (14, 16, 24, 1) and clips[0].fps == pytest.approx(15.0)
    train_clips, holdout = split_holdout(clips, 0.125)
    assert [c.name for c in holdout] == ["cam2"] and len(train_clips) == 2
    single_train, single_holdout = split_holdout(clips[:1], 0.25)
    assert len(single_train[0].frames) + len(single_holdout[0].frames) == 14


def test_train_writes_a_calibrated_checkpoint_and_is_seeded(videos: Path, tmp_path: Path) -> None:
    train(videos, out=tmp_path / "a.safetensors", **TINY)
    train(videos, out=tmp_path / "b.safetensors", **TINY)
    a, b = checkpoint.load(tmp_path / "a.safetensors"), checkpoint.load(tmp_path / "b.safetensors")
    assert a.fps == pytest.approx(15.0)
    assert a.calibration is not None and a.calibration.frames == 10  # cam2's 14 frames minus the first 4
    assert a.provenance["train_clips"] == ["cam0", "cam1"] and a.provenance["calibration_clips"] == ["cam2"]
    assert a.provenance["epochs"] == 1 and a.provenance["wall_time_s"] >= 0
    for k in a.state:
        assert torch.equal(a.state[k], b.state[k]), k
    torch.manual_seed(0)
    initial = MemoryAE(a.config).items  # the seeded initial memory
    assert not torch.allclose(a.state["items"], initial)  # training moved the items ...
    torch.testing.assert_close(a.state["items"].norm(dim=1), torch.ones(len(initial)))  # ... and kept them unit-norm


def test_resume_continues_from_the_saved_epoch(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.safetensors"
    train(videos, out=out, **TINY)
    first = checkpoint.load(out)
    state = torch.load(out.with_name(out.name + ".state.pt"), weights_only=True)
    assert state["epoch"] == 1
    train(videos, out=out, resume=True, **{**TINY, "epochs": 2})
    second = checkpoint.load(out)
    assert second.provenance["epochs"] == 2
    assert torch.load(out.with_name(out.name + ".state.pt"), weights_only=True)["epoch"] == 2
    assert any(not torch.equal(first.state[k], second.state[k]) for k in first.state)


def test_revive_moves_unmatched_items_and_survives_resume(videos: Path, tmp_path: Path) -> None:
    """With --revive 1 an item no query of a step matched moves at once; the count and each item's idle
    steps travel with the training state, so a resumed run carries on counting."""
    out = tmp_path / "v.safetensors"
    train(videos, out=out, revive=1, memory_size=8, **TINY)
    first = checkpoint.load(out).provenance
    assert first["revive"] == 1 and first["items_revived"] > 0
    use = first["memory_use"]  # how the held-out clip's queries use the shipped memory
    assert use["items"] == 8 and 1 <= use["in_use"] <= 8 and 0 <= use["fixed_positions"] <= 1
    state = torch.load(out.with_name(out.name + ".state.pt"), weights_only=True)
    assert state["revived"] == first["items_revived"] and state["idle"].shape == (8,)
    train(videos, out=out, revive=1, memory_size=8, resume=True, **{**TINY, "epochs": 2})
    assert checkpoint.load(out).provenance["items_revived"] > first["items_revived"]
    train(videos, out=tmp_path / "off.safetensors", memory_size=8, **TINY)
    assert checkpoint.load(tmp_path / "off.safetensors").provenance["items_revived"] == 0  # the paper's default


def test_skips_option_reaches_the_checkpoint(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.safetensors"
    train(videos, out=out, skips=2, **TINY)
    ckpt = checkpoint.load(out)
    assert ckpt.config.skips == 2 and ckpt.build().decoder.stage3[0].in_channels == 4 * TINY["base_width"]
    with pytest.raises(typer.BadParameter, match="skips must be 0 to 3"):
        train(videos, out=out, skips=5, **TINY)


def test_background_option_fills_the_scene_from_the_training_footage(videos: Path, tmp_path: Path) -> None:
    """The scene is the footage's dark noise (grey 0-40) away from the rows the bright square crosses, not
    the zeros the buffer starts at."""
    out = tmp_path / "b.safetensors"
    train(videos, out=out, background=True, **TINY)
    scene = checkpoint.load(out).build().background  # (1, H, W) in [-1, 1]
    assert scene.shape == (1, TINY["height"], TINY["width"])
    grey = (scene + 1) * 127.5
    away = torch.cat([grey[:, :3], grey[:, 9:]], dim=1)  # the square spans video rows 8-16, model rows 4-8
    assert 5 < away.mean() < 40 and away.max() <= 40
    assert checkpoint.load(out).config.background


def test_the_empty_scene_drops_who_stands_still_in_one_clip() -> None:
    rng = np.random.default_rng(0)
    scene = rng.integers(60, 120, (16, 24, 1), dtype=np.uint8)
    clips = [Clip(str(i), np.repeat(scene[None], 20, axis=0), 10.0) for i in range(3)]
    clips[1].frames[:, 4:12, 8:12] = 250  # stands there all clip long
    clips[2].frames[5:9, 2:6, 2:6] = 0  # passes by
    np.testing.assert_allclose(empty_scene(clips).numpy(), scene.transpose(2, 0, 1) / 127.5 - 1, atol=1e-6)


def test_resume_without_state_is_an_error(videos: Path, tmp_path: Path) -> None:
    with pytest.raises(typer.BadParameter, match="not found"):
        train(videos, out=tmp_path / "none.safetensors", resume=True, **TINY)


def test_frame_folders_need_fps(tmp_path: Path) -> None:
    clip = tmp_path / "frames" / "01"
    clip.mkdir(parents=True)
    for t in range(8):
        cv2.imwrite(str(clip / f"{t:03d}.jpg"), np.full((32, 48, 3), t * 20, np.uint8))
    with pytest.raises(typer.BadParameter, match="--fps"):
        train(tmp_path, out=tmp_path / "x.safetensors", **{**TINY, "holdout": 0.0})


def test_bad_data_paths(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        list_clips(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="no frame folders or video files"):
        list_clips(tmp_path)
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match=r"broken\.mp4"):
        load_clips(tmp_path, ModelConfig(base_width=2, height=16, width=24))
    with pytest.raises(typer.BadParameter, match=r"broken\.mp4"):  # the command's error line, not a traceback
        train(tmp_path, out=tmp_path / "x.safetensors", **TINY)
    with pytest.raises(typer.BadParameter, match="not a readable safetensors"):
        evaluate(tmp_path / "notes.txt", tmp_path)


def test_train_validates_on_synthetic_anomalies_and_ships_the_best_epoch(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Held-out clips long enough for synthetic events: every epoch is validated, the best one is written,
    with the windows, λ and thresholds that validation chose."""
    import re

    root = tmp_path_factory.mktemp("long")
    for i in range(3):
        write_video(root / f"cam{i}.avi", 40, 10.0, seed=i)
    out = tmp_path / "v.safetensors"
    train(root, out=out, **{**TINY, "epochs": 3, "validate_every": 1})
    printed = capsys.readouterr().out
    lines = dict(re.findall(r"epoch (\d+): (validation AUC .*)", printed))
    assert sorted(map(int, lines)) == [1, 2, 3]
    assert len(re.findall(r"epoch \d: memory: \d+ of 10 items in use", printed)) == 3  # the collapse, visible
    aucs = {int(e): float(re.search(r"AUC ([\d.]+) %", x)[1]) for e, x in lines.items()}
    # calm first: every benign kind at or below 5 % of its frames above alert_on
    shares = {int(e): re.findall(r"([\d.]+) %", x.split("alert_on:")[1]) for e, x in lines.items()}
    calm = {e: max(map(float, v)) <= 5.0 for e, v in shares.items()}
    fast = {int(e): "refuses it" not in x for e, x in lines.items()}  # a tiny fp32-trained net can stray in bf16
    ckpt = checkpoint.load(out)
    best = max(aucs, key=lambda e: (fast[e], calm[e], aucs[e]))
    assert ckpt.provenance["shipped_epoch"] == best
    chosen = ckpt.provenance["validation"]["best"]
    assert chosen["auc"] * 100 == pytest.approx(aucs[best], abs=0.01)
    assert (ckpt.calibration.error_window, ckpt.calibration.distance_window, ckpt.calibration.weight) == (
        chosen["error_window"], chosen["distance_window"], chosen["weight"],
    )  # fmt: skip
    assert f"shipping epoch {best} of 3" in printed
    assert ckpt.provenance["validation_kinds"] == list(synthetic.KINDS)
    assert (ckpt.provenance["validation_seed"], ckpt.provenance["validation_draws"]) == (0, 1)
    with pytest.raises(typer.BadParameter, match="anomaly kinds must be"):
        train(root, out=tmp_path / "k.safetensors", **{**TINY, "kinds": "bikes"})


def test_train_never_ships_an_epoch_the_fast_inference_path_refuses(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """An epoch whose bf16 output strays from fp32 would be served in fp32 at a third of the speed."""
    from model.commands import train as command

    root = tmp_path_factory.mktemp("refused")
    for i in range(3):
        write_video(root / f"cam{i}.avi", 40, 10.0, seed=i)
    checked: list[int] = []  # the fake stands in for the bf16 check; a real refusal is tested below

    def refuse_all_but_the_second(model: MemoryAE, device: torch.device) -> str | None:
        checked.append(len(checked) + 1)
        return None if len(checked) == 2 else "the service's bf16 path refuses it (output strays 0.2 from fp32 > 0.05)"

    monkeypatch.setattr(command, "fast_path_refusal", refuse_all_but_the_second)
    out = tmp_path / "v.safetensors"
    train(root, out=out, **{**TINY, "epochs": 3, "validate_every": 1})
    assert checked == [1, 2, 3]
    assert checkpoint.load(out).provenance["shipped_epoch"] == 2
    assert capsys.readouterr().out.count("bf16 path refuses it") == 2


def test_wall_time_counts_the_validations(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model card's training time is provenance's wall time: a run's validations are part of it."""
    import time

    from model.commands import train as command

    root = tmp_path_factory.mktemp("timed")
    for i in range(3):
        write_video(root / f"cam{i}.avi", 40, 10.0, seed=i)
    pause = 1.0

    def slow_check(model: MemoryAE, device: torch.device) -> None:  # a slow validation step, once per epoch
        time.sleep(pause)

    monkeypatch.setattr(command, "fast_path_refusal", slow_check)
    started = time.monotonic()
    train(root, out=tmp_path / "t.safetensors", **{**TINY, "epochs": 2, "validate_every": 1})
    elapsed = time.monotonic() - started
    wall = checkpoint.load(tmp_path / "t.safetensors").provenance["wall_time_s"]
    assert 2 * pause <= wall <= elapsed + 0.05  # provenance rounds to 0.1 s
    assert wall >= 0.8 * elapsed  # only loading the clips and writing the file are left out


def test_fast_path_refusal_names_weights_that_stray_in_bf16() -> None:
    from model import inference
    from model.commands.train import fast_path_refusal

    cpu = torch.device("cpu")
    torch.manual_seed(0)
    net = MemoryAE(ModelConfig(base_width=4, height=32, width=48, memory_size=4))
    assert fast_path_refusal(net, cpu) is None
    with torch.no_grad():
        net.decoder.head[-2].weight.mul_(1e3)  # the frame's pre-tanh values in the hundreds: bf16's 8 bits show
    refusal = fast_path_refusal(net, cpu)
    if inference.bf16_supported(cpu):
        assert "the service's bf16 path refuses it" in (refusal or "")
    else:  # no bf16 here: the service serves fp32 anyway, so no epoch is held back for it
        assert refusal is None


def test_speed_loss_trains_on_skipped_windows_and_survives_resume(tmp_path: Path) -> None:
    """--lambda-speed adds half a batch of windows played 2-4x too fast to every step (clips need room for
    the widest: 17 frames); its sampler's state travels with the training state; reconstruction refuses it."""
    for i in range(3):
        write_video(tmp_path / f"cam{i}.avi", 24, 15.0, seed=i)
    out = tmp_path / "fast.safetensors"
    train(tmp_path, out=out, lambda_speed=0.01, **TINY)
    fast = checkpoint.load(out)
    assert fast.provenance["lambda_speed"] == 0.01
    assert "pseudo_rng" in torch.load(out.with_name(out.name + ".state.pt"), weights_only=True)
    train(tmp_path, out=out, lambda_speed=0.01, resume=True, **{**TINY, "epochs": 2})
    assert checkpoint.load(out).provenance["epochs"] == 2
    train(tmp_path, out=tmp_path / "plain.safetensors", **TINY)
    plain = checkpoint.load(tmp_path / "plain.safetensors")
    assert plain.provenance["lambda_speed"] == 0  # off by default, as in the paper
    assert any(not torch.equal(fast.state[k], plain.state[k]) for k in plain.state)  # the loss reached the weights
    with pytest.raises(typer.BadParameter, match="no speed"):
        train(tmp_path, out=out, lambda_speed=0.01, variant="reconstruction", **TINY)


def test_slow_loss_predicts_the_normal_speed_frame_from_skipped_windows(tmp_path: Path) -> None:
    """--lambda-slow trains the predictor on the skipped windows: beside --lambda-speed it changes the weights
    (whose skipped frames otherwise teach nothing), and alone it brings the skipped windows in; reconstruction
    refuses it."""
    for i in range(3):
        write_video(tmp_path / f"cam{i}.avi", 24, 15.0, seed=i)
    train(tmp_path, out=tmp_path / "both.safetensors", lambda_speed=0.01, lambda_slow=0.1, **TINY)
    both = checkpoint.load(tmp_path / "both.safetensors")
    assert both.provenance["lambda_slow"] == 0.1
    train(tmp_path, out=tmp_path / "speed.safetensors", lambda_speed=0.01, **TINY)
    speed = checkpoint.load(tmp_path / "speed.safetensors")
    assert speed.provenance["lambda_slow"] == 0  # off by default
    assert any(not torch.equal(both.state[k], speed.state[k]) for k in speed.state)  # the slow loss alone differs
    train(tmp_path, out=tmp_path / "slow.safetensors", lambda_slow=0.1, **TINY)
    assert "pseudo_rng" in torch.load(tmp_path / "slow.safetensors.state.pt", weights_only=True)
    with pytest.raises(typer.BadParameter, match="no speed"):
        train(tmp_path, out=tmp_path / "x.safetensors", lambda_slow=0.1, variant="reconstruction", **TINY)


@pytest.mark.parametrize(("option", "value"), [("lambda_gd", 1.0), ("motion_weight", 10.0), ("reverse", 1.0)])
def test_an_extra_loss_reaches_the_weights_and_the_provenance(
    videos: Path, tmp_path: Path, option: str, value: float
) -> None:
    """--lambda-gd, --motion-weight and --reverse (windows played backwards) change what the network learns and
    are recorded; off by default."""
    train(videos, out=tmp_path / "extra.safetensors", **{option: value}, **TINY)
    extra = checkpoint.load(tmp_path / "extra.safetensors")
    assert extra.provenance[option] == value
    train(videos, out=tmp_path / "plain.safetensors", **TINY)
    plain = checkpoint.load(tmp_path / "plain.safetensors")
    assert plain.provenance[option] == 0  # off by default, as in MNAD
    assert any(not torch.equal(extra.state[k], plain.state[k]) for k in plain.state)


def test_augment_kinds_reach_the_weights_and_the_provenance(videos: Path, tmp_path: Path) -> None:
    """--augment-kinds limits --augment's camera changes (all four by default) and is recorded; a name that is
    not a camera change is refused before any training."""
    train(videos, out=tmp_path / "all.safetensors", augment=1.0, **TINY)
    every = checkpoint.load(tmp_path / "all.safetensors")
    assert every.provenance["augment_kinds"] == ["exposure", "reframe", "compression", "sensor"]
    train(videos, out=tmp_path / "exp.safetensors", augment=1.0, augment_kinds="exposure", **TINY)
    exposure = checkpoint.load(tmp_path / "exp.safetensors")
    assert exposure.provenance["augment_kinds"] == ["exposure"]
    assert any(not torch.equal(every.state[k], exposure.state[k]) for k in every.state)
    with pytest.raises(typer.BadParameter, match="camera changes must be"):
        train(videos, out=tmp_path / "x.safetensors", augment_kinds="blur", **TINY)


def test_which_variants_take_the_extra_losses(videos: Path, tmp_path: Path) -> None:
    """Both variants predict a frame, so both take the gradient loss; a reconstruction has no last input frame."""
    train(videos, out=tmp_path / "recon.safetensors", lambda_gd=1.0, variant="reconstruction", **TINY)
    assert checkpoint.load(tmp_path / "recon.safetensors").provenance["lambda_gd"] == 1.0
    with pytest.raises(typer.BadParameter, match="nothing moves"):
        train(videos, out=tmp_path / "x.safetensors", motion_weight=10.0, variant="reconstruction", **TINY)
