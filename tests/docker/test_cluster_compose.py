"""The compose `cluster` profile (issue 15), checked statically like the rest of docker-compose.yml."""

from __future__ import annotations

import yaml
from deploy import REPO
from test_files import SETTING_NAMES, compose

from service.core.settings import Settings

CLUSTER = {"ray-head", "ray-worker", "coordinator", "mnad-api", "postgres", "redis"}


def test_cluster_profile_validates_and_stays_out_of_the_default_stack() -> None:
    result = compose("--profile", "cluster", "config", "-q")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(compose("--profile", "cluster", "config").stdout)["services"]
    assert CLUSTER | {"prometheus", "camera"} <= set(services)
    for name in CLUSTER:
        assert services[name]["profiles"] == ["cluster"], f"{name} would run in the default stack"


def test_cluster_profile_wiring() -> None:
    services = yaml.safe_load(compose("--profile", "cluster", "config").stdout)["services"]
    for name in ("ray-head", "ray-worker", "coordinator", "mnad-api"):
        service = services[name]
        assert service["image"] == "mnad-service:cluster" and service["build"]["args"]["EXTRAS"] == "[cluster]"
        env = service["environment"]
        assert set(env) <= SETTING_NAMES, f"{name}: not settings: {set(env) - SETTING_NAMES}"
        settings = Settings(mode=env["MNAD_MODE"], database_url=env["MNAD_DATABASE_URL"], bus_url=env["MNAD_BUS_URL"])
        assert settings.mode == "cluster"
        assert env["MNAD_DATABASE_URL"].endswith("@postgres:5432/mnad") and env["MNAD_BUS_URL"].startswith(
            "redis://redis:6379")  # fmt: skip
    assert "ray-head:6379" in services["ray-worker"]["command"]
    assert services["ray-worker"]["deploy"]["replicas"] == 2
    # workers run under `mnad-cluster node`, which drains their shards on docker stop before Ray stops
    assert services["ray-worker"]["entrypoint"] == ["mnad-cluster"] and services["ray-worker"]["command"][0] == "node"
    assert services["mnad-api"]["entrypoint"] == ["serve"] and "mnad" in services["mnad-api"]["networks"]["default"][
        "aliases"]  # fmt: skip
    assert services["coordinator"]["entrypoint"] == ["mnad-cluster"]
    # every shard serves /metrics on 9101 of its Ray worker, and Prometheus finds each worker replica there
    assert services["coordinator"]["environment"]["MNAD_SHARD_METRICS_PORT"] == "9101"
    prometheus = yaml.safe_load((REPO / "docker" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prometheus["scrape_configs"]}
    assert jobs["mnad-shards"]["dns_sd_configs"] == [{"names": ["ray-worker"], "type": "A", "port": 9101}]
    assert 'ARG EXTRAS=""' in (REPO / "docker" / "Dockerfile").read_text(), "the default image has no cluster extra"
