"""Alert webhooks with several API nodes (cluster mode) on a real PostgreSQL: the outbox is shared, each URL is
sent by one node at a time, so every alert reaches the receiver once, in order, and a sender waiting out a
failing receiver keeps the URL; when that node dies without handing its lease back, another takes the URL over
once the lease runs out and goes on from the cursor."""

from __future__ import annotations

import asyncio
import time

import parts
import pytest

pytestmark = pytest.mark.cluster


def test_two_api_nodes_send_each_alert_once_and_one_takes_over_when_the_other_dies(pg_dsn) -> None:
    from service.alerts.webhooks import WebhookPolicy, Webhooks, outbox_writer
    from service.cluster.store import PostgresStore
    from service.core.bus import LocalBus
    from service.core.messages import AlertOpen
    from service.core.metrics import Metrics

    receiver = parts.WebhookReceiver(down=2)
    shard, node_a, node_b = PostgresStore(pg_dsn), PostgresStore(pg_dsn), PostgresStore(pg_dsn)
    policy = WebhookPolicy(timeout_s=1, lease_s=1.5, poll_s=0.1, backoff_s=1.0)  # the second wait outlasts a lease
    put = outbox_writer(shard, policy.max_age_s)  # a shard's alert writer

    def alert(id: int) -> AlertOpen:
        return AlertOpen(stream="gate", name="gate", id=id, start_frame=id, start_time=float(id), end_frame=None,
                         end_time=None, peak_score=0.9, peak_frame=id, thumbnail_url=None,
                         heatmap_url=None)  # fmt: skip

    async def until(condition, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, f"timed out; received {receiver.ids}"
            await asyncio.sleep(0.05)

    async def main() -> None:
        a = Webhooks([receiver.url], node_a, LocalBus(8), Metrics(), policy, holder="node-a")
        b = Webhooks([receiver.url], node_b, LocalBus(8), Metrics(), policy, holder="node-b")
        a.start()
        b.start()
        for id in range(1, 11):
            put(alert(id))
            await asyncio.sleep(0.05)
        await until(lambda: len(receiver.ids) >= 12, 20)  # events settle 2 s on PostgreSQL first
        await asyncio.sleep(1.0)  # time for a second copy, were there one
        assert receiver.ids == [1, 1, *range(1, 11)]  # alert 1 retried by its sender, held through the waits
        holder = node_a._all("SELECT holder FROM webhook_cursors")[0]["holder"]
        assert holder == "node-a"  # the first to start, kept through the 2 s wait (no handover to node b)
        sender, standby = a, b
        for task in sender._tasks:  # the sending node dies: its lease is not handed back
            task.cancel()
        await asyncio.gather(*sender._tasks, return_exceptions=True)
        sender._tasks = []
        for id in range(11, 14):
            put(alert(id))
        await until(lambda: len(receiver.ids) >= 15, 15)
        assert receiver.ids == [1, 1, *range(1, 14)]
        assert node_a._all("SELECT holder FROM webhook_cursors")[0]["holder"] != holder  # taken over
        await standby.stop(grace_s=0)
        await sender.stop(grace_s=0)

    try:
        asyncio.run(main())
    finally:
        receiver.close()
        for s in (shard, node_a, node_b):
            s.close()
