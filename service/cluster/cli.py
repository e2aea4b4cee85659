"""`mnad-cluster`: start the coordinator on a running Ray cluster, show it, stop it (docs/cluster.md).

Settings come from the environment like `serve`'s (MNAD_DATABASE_URL, MNAD_BUS_URL, MNAD_RAY_ADDRESS, ...).
"""

from __future__ import annotations

import json

import typer

from service.core.settings import Settings

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def start(shards: int = typer.Option(0, help="wait until this many shards answer")) -> None:
    """Start the named coordinator (detached: it outlives this command) or find the running one."""
    from service.cluster.actors import start as start_coordinator

    coordinator = start_coordinator(Settings(mode="cluster"), wait_shards=shards)
    import ray

    typer.echo(json.dumps(ray.get(coordinator.status.remote()), indent=1))


@app.command()
def status() -> None:
    """The coordinator's shards: node, ready, lost, cameras with their epochs."""
    import ray

    from service.cluster.actors import COORDINATOR, NAMESPACE

    ray.init(address=Settings(mode="cluster").ray_address or "auto", namespace=NAMESPACE, log_to_driver=False)
    typer.echo(json.dumps(ray.get(ray.get_actor(COORDINATOR).status.remote()), indent=1))


@app.command()
def stop() -> None:
    """Stop the coordinator and its shards (cameras stay in PostgreSQL; `start` resumes them)."""
    import ray

    from service.cluster.actors import COORDINATOR, NAMESPACE

    ray.init(address=Settings(mode="cluster").ray_address or "auto", namespace=NAMESPACE, log_to_driver=False)
    coordinator = ray.get_actor(COORDINATOR)
    ray.get(coordinator.stop.remote())
    ray.kill(coordinator, no_restart=True)


def cli() -> None:
    app()
