"""Fixtures with real parts for cluster mode (issue 15): PostgreSQL, Redis and a 2-node Ray cluster, all in a
network namespace holding only loopback (tests/cluster/parts.py says why), started once per session."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
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


@pytest.fixture(scope="session")
def ray_cluster(loopback, tmp_path_factory) -> Iterator[list[parts.RayNode]]:
    """A head and one worker node, each with 2 logical CPUs and a `mnad_<name>` resource."""
    root = Path(__import__("tempfile").mkdtemp(prefix="mnad-ray-"))  # short: Ray's socket paths have a limit
    head = parts.RayNode("head", root / "t").start()
    worker = parts.RayNode("worker", root / "t", address=head.gcs_address).start()
    nodes = [head, worker]
    yield nodes
    for node in reversed(nodes):
        node.stop()
