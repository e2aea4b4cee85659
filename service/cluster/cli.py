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


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def node(
    ctx: typer.Context,
    drain_timeout: float = typer.Option(30.0, help="longest wait for the cameras to run on other nodes"),
) -> None:
    """Run a Ray node (`ray start --block` with the options given after --) that hands its cameras over on
    SIGTERM or SIGINT before it stops: use it instead of `ray start` on every node that runs shards."""
    import logging

    from service.cluster.node import run

    logging.basicConfig(level=logging.INFO)
    raise typer.Exit(run(list(ctx.args), drain_timeout))


@app.command()
def drain(shard: list[str] = typer.Argument(..., help="shard names, as `status` lists them")) -> None:
    """Hand these shards' cameras over to the other shards (checkpoint, release, move) and print where they went."""
    import ray

    from service.cluster.actors import COORDINATOR, NAMESPACE

    ray.init(address=Settings(mode="cluster").ray_address or "auto", namespace=NAMESPACE, log_to_driver=False)
    typer.echo(json.dumps(ray.get(ray.get_actor(COORDINATOR).drain.remote(shard)), indent=1))


def cli() -> None:
    app()
