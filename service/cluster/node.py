"""One Ray node that hands its cameras over before it stops: `mnad-cluster node [RAY START OPTIONS]`.

`ray start --block` ends its actors on SIGTERM without running any handler in them, so a node stopped that
way looks dead to the coordinator: its cameras wait for the node timeout and resume from the last periodic
checkpoint. This wrapper runs `ray start --block` as its child and, on SIGTERM or SIGINT (`docker stop`, a
systemd stop, Ctrl-C), first asks the coordinator to drain the shards running under it, then stops Ray.
Linux only: it finds its shards among its descendants in /proc.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STOP_GRACE_S = 30.0  # `ray start --block` may take this long to stop its processes after the drain


def descendants(pid: int) -> list[int]:
    """pid's children, grandchildren... from /proc (a snapshot)."""
    parents: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = Path(stat).read_text()
            fields = text[text.rindex(")") + 2 :].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def local_shards(status: dict[str, dict[str, Any]], pids: set[int], node_ids: set[str]) -> list[str]:
    """The coordinator's shards that run in one of `pids` on one of `node_ids` (a pid alone is not unique
    across machines)."""
    return [name for name, s in status.items() if s.get("pid") in pids and s.get("node") in node_ids]


def option(args: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in a command line."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def drain_here(ray_pid: int, ray_args: list[str], timeout: float) -> dict[str, Any]:
    """Ask the coordinator to drain the shards running under `ray_pid`; its answer (see Coordinator.drain)."""
    import ray

    from service.cluster.actors import COORDINATOR, NAMESPACE

    address = option(ray_args, "--address")
    if address is None:  # the head: its GCS listens on --port (Ray's default 6379) of this machine
        address = f"{option(ray_args, '--node-ip-address') or '127.0.0.1'}:{option(ray_args, '--port') or 6379}"
    ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    try:
        pids = set(descendants(ray_pid))
        ip = option(ray_args, "--node-ip-address") or ray.util.get_node_ip_address()
        here = {n["NodeID"] for n in ray.nodes() if n["Alive"] and n.get("NodeManagerAddress") == ip}
        coordinator = ray.get_actor(COORDINATOR)
        shards = local_shards(ray.get(coordinator.status.remote(), timeout=10), pids, here)
        return ray.get(coordinator.drain.remote(shards, timeout), timeout=timeout + 10)
    finally:
        ray.shutdown()


def run(ray_args: list[str], drain_timeout: float) -> int:
    """Run `ray start --block RAY_ARGS` until it exits; on SIGTERM/SIGINT drain, then stop it. Its exit code."""
    ray_bin = str(Path(sys.executable).with_name("ray"))
    # its own session: a terminal's Ctrl-C reaches this process only, which drains before Ray hears of it
    child = subprocess.Popen([ray_bin, "start", "--block", *ray_args], start_new_session=True)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=stop, args=(signum,), daemon=True).start()

    def stop(signum: int) -> None:
        started = time.monotonic()
        try:
            answer = drain_here(child.pid, ray_args, drain_timeout)
            log.warning("drained in %.1f s: %s", time.monotonic() - started, answer)
        except Exception:  # no coordinator (yet), cluster gone: stop anyway, cameras fail over as from a lost node
            log.exception("drain failed; stopping without a handover")
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(STOP_GRACE_S)
            return
        pids = descendants(child.pid)
        for pid in [child.pid, *pids]:  # what Ray left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return child.wait()
