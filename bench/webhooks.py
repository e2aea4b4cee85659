"""Webhook outbox bench (not a test): how soon an alert reaches a webhook receiver through the outbox, how many
alerts a second one URL drains, and how soon a backlog goes out once a receiver that was down comes back.

    python bench/webhooks.py [--single 100] [--burst 1000] [--outage 300]

In one process, as `serve` runs them: a real SQLite store in a temporary directory, the alert writer's outbox
call (`outbox_writer`), the published message ringing the URL's task (a LocalBus), and a loopback HTTP receiver
(tests/cluster/parts.py's WebhookReceiver) that answers 200, or 503 while refusing.

1. single: `--single` alerts one at a time, each after the previous arrived: time from the outbox write to the
   receiver reading the request (p50, p95, max).
2. burst: `--burst` alerts written at once: alerts per second until the last arrived (in order).
3. outage: the receiver answers 503 while `--outage` alerts are written; then it answers 200: time from then
   until the last arrived (the URL's retry wait is at most 30 s; here the backoff starts at 0.05 s).

Prints the CPU other processes used meanwhile (a figure taken beside another job is not a figure).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cluster"))  # the cluster tests' receiver

from common import ForeignLoad, table
from parts import WebhookReceiver as Receiver

from service.alerts.episodes import ALERTS_TOPIC
from service.alerts.webhooks import WebhookPolicy, Webhooks, outbox_writer
from service.core.bus import LocalBus
from service.core.messages import AlertOpen
from service.core.metrics import Metrics
from service.core.store import SqliteStore


def alert(id: int) -> AlertOpen:
    return AlertOpen(stream="bench", name="bench", id=id, start_frame=id, start_time=time.time(), end_frame=None,
                     end_time=None, peak_score=0.9, peak_frame=id, thumbnail_url=None, heatmap_url=None)  # fmt: skip


async def until(condition, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the receiver did not get every alert")
        await asyncio.sleep(0.001)


async def run(args: argparse.Namespace, receiver: Receiver, store: SqliteStore) -> list[dict]:
    bus = LocalBus(1024)
    policy = WebhookPolicy(timeout_s=5, backoff_s=0.05)
    hooks = Webhooks([receiver.url], store, bus, Metrics(), policy)
    put = outbox_writer(store, policy.max_age_s)
    next_id = iter(range(1, 10**9))

    def emit() -> int:
        message = alert(next(next_id))
        put(message)  # what the alert writer does once the alert is stored ...
        bus.publish(ALERTS_TOPIC, message)  # ... then publishes it
        return message.id

    hooks.start()
    rows = []
    try:
        latencies = []
        for _ in range(args.single):
            sent = time.perf_counter()
            id = emit()
            await until(lambda id=id: receiver.accepted and receiver.accepted[-1][1] == id)
            latencies.append(receiver.accepted[-1][0] - sent)
        ms = sorted(1000 * x for x in latencies)
        rows.append({"case": f"single ({args.single} alerts)", "p50 ms": statistics.median(ms),
                     "p95 ms": ms[int(0.95 * (len(ms) - 1))], "max ms": ms[-1]})  # fmt: skip

        before = len(receiver.accepted)
        sent = time.perf_counter()
        ids = [emit() for _ in range(args.burst)]
        await until(lambda: len(receiver.accepted) >= before + args.burst)
        took = receiver.accepted[-1][0] - sent
        in_order = [i for _, i in receiver.accepted[before:]] == ids
        rows.append({"case": f"burst ({args.burst} alerts)", "alerts/s": args.burst / took, "s": took,
                     "in order": in_order})  # fmt: skip

        receiver.refusing = True
        before = len(receiver.accepted)
        ids = [emit() for _ in range(args.outage)]
        await asyncio.sleep(1.0)  # the URL retrying its first alert meanwhile
        receiver.refusing = False
        back = time.perf_counter()
        await until(lambda: len(receiver.accepted) >= before + args.outage)
        took = receiver.accepted[-1][0] - back
        in_order = [i for _, i in receiver.accepted[before:]] == ids
        rows.append({"case": f"outage ({args.outage} alerts waiting)", "s": took, "in order": in_order})
    finally:
        await hooks.stop(grace_s=0)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--single", type=int, default=100)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--outage", type=int, default=300)
    args = parser.parse_args()
    load = ForeignLoad()
    receiver = Receiver()
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "mnad.db")
        rows = asyncio.run(run(args, receiver, store))
        store.close()
    receiver.server.shutdown()
    print(table(rows, ["case", "p50 ms", "p95 ms", "max ms", "alerts/s", "s", "in order"]))
    print(f"foreign_cores {load.cores()} (CPU other processes used meanwhile, on average)")


if __name__ == "__main__":
    main()
