"""Fixtures with real parts for cluster mode (issue 15): PostgreSQL, Redis and a 2-node Ray cluster, all in a
network namespace holding only loopback (tests/cluster/parts.py says why), started once per session."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(HERE))

import parts  # noqa: E402

pytestmark = pytest.mark.cluster


def _need_extra() -> None:
    for module in ("ray", "psycopg", "redis"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} missing: the cluster extra (bash scripts/setup.sh test installs it)")


@pytest.fixture(scope="session")
def loopback() -> Iterator[None]:
    """Every server of the cluster tests runs in here: a namespace whose only interface is lo."""
    _need_extra()
    if os.geteuid() != 0:
        pytest.skip("the cluster tests make a network namespace, which needs root (CI runs as root)")
    with parts.loopback_namespace():
        assert parts.interfaces() == ["lo"]
        yield


@pytest.fixture(scope="session")
def postgres(loopback) -> Iterator[parts.Postgres]:
    pg = parts.Postgres().start()
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def redis_server(loopback) -> Iterator[parts.Redis]:
    r = parts.Redis().start()
    yield r
    r.stop()


@pytest.fixture
def pg_dsn(postgres: parts.Postgres) -> Iterator[str]:
    """A fresh database per test: the same server, no table left from another test."""
    import psycopg

    name = f"t{os.urandom(4).hex()}"
    admin = postgres.dsn.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    yield postgres.dsn.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def ray_nodes(loopback, tmp_path: Path) -> Iterator[Callable[..., parts.RayNode]]:
    """Start Ray nodes (the first is the head) with 2 logical CPUs and a `mnad_<name>` resource each; every
    node still running at the end is stopped, the head last."""
    root = Path(tempfile.mkdtemp(prefix="mnad-ray-"))  # short: Ray's socket paths have a length limit
    nodes: list[parts.RayNode] = []

    def start(name: str, handover: bool = False) -> parts.RayNode:
        head = nodes[0].gcs_address if nodes else None
        nodes.append(parts.RayNode(name, root / "t", address=head, handover=handover).start())
        return nodes[-1]

    yield start
    for node in reversed(nodes):
        node.stop()
    logs = root / "t" / "session_latest" / "logs"
    if logs.is_dir():  # kept with the test's tmp_path (pytest keeps the last 3 runs)
        shutil.copytree(logs, tmp_path / "ray-logs", symlinks=False, ignore_dangling_symlinks=True,
                        dirs_exist_ok=True)  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_models(ped2: Path, tmp_path_factory) -> Path:
    """A tiny checkpoint (seconds to train) from two Ped2 training clips, as the service tests train one."""
    root = tmp_path_factory.mktemp("train")
    (root / "frames").mkdir()
    for name in ("01", "02"):
        (root / "frames" / name).symlink_to(ped2 / "training" / "frames" / name)
    out = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    train = "model.commands.train" if importlib.util.find_spec("model.commands") else "model.train"
    subprocess.run(
        [sys.executable, "-m", train, str(root), "--out", str(out), "--epochs", "1", "--base-width", "4",
         "--height", "32", "--width", "48", "--fps", "10"],
        check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, timeout=600,
    )  # fmt: skip
    return out.parent


def _service_conftest():
    """tests/service/conftest.py, for its RTSP server and lossless clip helpers (not as fixtures)."""
    if "service_test_parts" in sys.modules:
        return sys.modules["service_test_parts"]
    spec = importlib.util.spec_from_file_location("service_test_parts", HERE.parent / "service" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def camera_clips(ped2: Path, tmp_path_factory) -> dict[str, Path]:
    """Lossless H.264 clips of Ped2 test clip 01: 'normal' (frames 0-59) and 'anomaly' (60-119, the cyclist),
    each repeated for 4 minutes at 10 fps: a camera streams without a break for the whole scenario, so the
    frames a handover loses can be counted against the wall clock."""
    import cv2
    import numpy as np

    helpers = _service_conftest()
    files = sorted((ped2 / "testing" / "frames" / "01").glob("*.jpg"))
    out = tmp_path_factory.mktemp("cluster-clips")
    clips = {}
    for name, chosen in (("normal", files[:60]), ("anomaly", files[60:120])):
        frames = np.stack([cv2.imread(str(f), cv2.IMREAD_COLOR) for f in chosen] * 40)
        clips[name] = helpers.encode_h264_lossless(frames, out / f"{name}.mkv")
    return clips


@pytest.fixture
def rtsp_cameras(loopback) -> Iterator[Callable[[Path], Any]]:
    """GStreamer's RTSP test server (tests/service/rtsp_server.py), one process per camera, in the namespace."""
    helpers = _service_conftest()
    servers: list[Any] = []

    def start(clip: Path) -> Any:
        servers.append(helpers.RtspServer(clip).start())
        return servers[-1]

    yield start
    for server in servers:
        server.kill()
