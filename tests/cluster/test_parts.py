"""The real parts the cluster tests stand on: they start, answer, and listen on loopback only."""

from __future__ import annotations

import subprocess

import parts
import pytest

pytestmark = pytest.mark.cluster

LOOPBACK_V4 = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it
WILDCARD = {"00000000", "00000000000000000000000000000000"}


def test_postgres_and_redis_answer(pg_dsn: str, redis_server: parts.Redis) -> None:
    import psycopg
    import redis

    with psycopg.connect(pg_dsn) as c:
        assert c.execute("SELECT 1 + 1").fetchone() == (2,)
    assert redis.Redis.from_url(redis_server.url).ping()


def test_two_ray_nodes_on_loopback_only(ray_nodes, postgres, redis_server) -> None:
    head, worker = ray_nodes("head"), ray_nodes("worker")

    def both_nodes() -> bool:
        status = subprocess.run([parts.RAY, "status", "--address", head.gcs_address], capture_output=True,
                                text=True, timeout=60)  # fmt: skip
        return "mnad_head" in status.stdout and "mnad_worker" in status.stdout

    parts.wait_for(both_nodes, 60, "both nodes in `ray status`", interval=2)
    assert head.raylet_pid() and worker.raylet_pid()
    # Only lo exists here, so a wildcard bind is loopback too; any other address would be another interface.
    assert parts.interfaces() == ["lo"]
    for local in parts.listening_addresses():
        address = local.split(":")[0]
        assert address in WILDCARD or address == LOOPBACK_V4 or address.endswith("0100007F") or address == (
            "00000000000000000000000001000000"), f"listening on {local}"  # fmt: skip
