"""Alert webhooks (service.alerts.webhooks) against a real HTTP receiver on loopback: the body is the alert's
JSON, signed; failures that may pass are retried, refusals are not; a dead or slow receiver costs only its own
messages, counted, and never holds up another URL; a stop lets queued alerts go out. Then the real server:
an RTSP camera's alert reaches a configured webhook, signed, and is counted on /metrics."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import free_port
from pydantic import ValidationError
from support import wait_for

from service.alerts.episodes import ALERTS_TOPIC
from service.alerts.webhooks import Webhook, WebhookPolicy, Webhooks
from service.core.bus import LocalBus
from service.core.messages import AlertClose, AlertOpen
from service.core.metrics import Metrics
from service.core.settings import Settings

SECRET = b"s3cret"


class Receiver:
    """A loopback HTTP server that records each POST (time, headers, body) and answers from a script of statuses
    (the last one repeats), each after `delay_s`."""

    def __init__(self, statuses: tuple[int, ...] = (200,), delay_s: float = 0.0) -> None:
        self.requests: list[tuple[float, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((time.monotonic(), dict(self.headers), body))
                time.sleep(delay_s)
                status = statuses[min(len(receiver.requests), len(statuses)) - 1]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=abc"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, _, body in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(*statuses: int, delay_s: float = 0.0) -> Receiver:
        made.append(Receiver(statuses or (200,), delay_s))
        return made[-1]

    yield make
    for r in made:
        r.close()


def alert(kind: type = AlertOpen, id: int = 1, stream: str = "gate") -> AlertOpen | AlertClose:
    return kind(stream=stream, name=stream, id=id, start_frame=10, start_time=1.5, end_frame=None, end_time=None,
                peak_score=0.9, peak_frame=11, thumbnail_url=None, heatmap_url=None)  # fmt: skip


def outcomes(metrics: Metrics) -> dict[str, float]:
    return {s.labels["outcome"]: s.value for m in metrics.webhook_deliveries.collect() for s in m.samples
            if s.name.endswith("_total") and s.value}  # fmt: skip


def run(urls: list[str], scenario, policy: WebhookPolicy | None = None, queue: int = 64) -> Metrics:
    """`scenario(bus, webhooks)` on an event loop with the webhooks running on a LocalBus; returns the metrics."""
    metrics = Metrics()

    async def main() -> None:
        bus = LocalBus(queue)
        hooks = Webhooks(urls, bus, metrics, policy or WebhookPolicy(timeout_s=2, retries=3, backoff_s=0.01,
                                                                      secret=SECRET))  # fmt: skip
        hooks.start()
        try:
            await scenario(bus, hooks)
        finally:
            await hooks.stop(grace_s=0)

    asyncio.run(main())
    return metrics


def idle(hooks) -> bool:
    """Every URL done with what it was given: a receiver records a request before the sender counts it."""
    return all(hook.idle() for hook in hooks.hooks)


async def until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_an_alert_is_posted_as_its_json_signed_in_order(receivers) -> None:
    r = receivers()
    sent: list[str] = []

    async def scenario(bus, hooks) -> None:
        for message in (alert(AlertOpen), alert(AlertClose)):
            bus.publish(ALERTS_TOPIC, message)
            sent.append(message.wire(len(sent)))
        bus.publish("stream:gate", alert(AlertOpen, 2))  # another topic: not the webhook's
        await until(lambda: len(r.requests) == 2 and idle(hooks))  # received, and counted by the sender

    metrics = run([r.url], scenario)
    assert [body.decode() for _, _, body in r.requests] == sent  # the WebSocket's text, byte for byte, in order
    for (_, headers, body), kind in zip(r.requests, ("alert_open", "alert_close"), strict=True):
        assert headers["Content-Type"] == "application/json" and headers["X-MNAD-Event"] == kind
        assert headers["X-MNAD-Delivery"] == f"gate:1:{kind}"
        assert headers["X-MNAD-Signature"] == "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert outcomes(metrics) == {"delivered": 2}


def test_unsigned_without_a_secret(receivers) -> None:
    r = receivers()

    async def scenario(bus, hooks) -> None:
        bus.publish(ALERTS_TOPIC, alert())
        await until(lambda: r.requests)

    run([r.url], scenario, WebhookPolicy(timeout_s=2))
    assert "X-MNAD-Signature" not in r.requests[0][1]


def test_what_may_pass_later_is_retried_what_the_receiver_refuses_is_not(receivers) -> None:
    flaky, refusing = receivers(503, 429, 200), receivers(400)

    async def scenario(bus, hooks) -> None:
        bus.publish(ALERTS_TOPIC, alert())
        await until(lambda: len(flaky.requests) == 3 and idle(hooks))

    metrics = run([flaky.url, refusing.url], scenario)
    assert len(refusing.requests) == 1
    assert len({body for _, _, body in flaky.requests}) == 1  # the same body each time
    waits = [b[0] - a[0] for a, b in zip(flaky.requests, flaky.requests[1:], strict=False)]
    assert waits[1] > waits[0] >= 0.01  # backoff doubles
    assert outcomes(metrics) == {"delivered": 1, "refused": 1}


def test_a_dead_receiver_gives_up_counted_and_holds_up_no_other_url(receivers) -> None:
    healthy = receivers()
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens
    policy = WebhookPolicy(timeout_s=2, retries=3, backoff_s=0.5)

    async def scenario(bus, hooks) -> None:
        started = time.monotonic()
        bus.publish(ALERTS_TOPIC, alert())
        await until(lambda: healthy.requests)
        assert healthy.requests[0][0] - started < 0.4  # before the dead URL's first retry
        await until(lambda: idle(hooks), 10)

    metrics = run([dead, healthy.url], scenario, policy)
    assert outcomes(metrics) == {"delivered": 1, "failed": 1}


def test_a_slow_receiver_loses_its_oldest_alerts_counted_and_gets_the_newest(receivers) -> None:
    slow = receivers(delay_s=0.3)

    async def scenario(bus, hooks) -> None:
        for i in range(8):
            bus.publish(ALERTS_TOPIC, alert(id=i))
        await until(lambda: hooks.hooks[0].idle() and slow.requests, 10)

    metrics = run([slow.url], scenario, queue=2)
    ids = [body["id"] for body in slow.bodies()]
    counted = outcomes(metrics)
    assert ids[-1] == 7 and ids == sorted(ids) and len(ids) < 8
    assert counted["delivered"] == len(ids) and counted["dropped"] == 8 - len(ids)


def test_a_stop_lets_queued_alerts_go_out_within_its_grace(receivers) -> None:
    r = receivers(delay_s=0.1)
    metrics = Metrics()

    async def main() -> None:
        bus = LocalBus(64)
        hooks = Webhooks([r.url], bus, metrics, WebhookPolicy(timeout_s=2))
        hooks.start()
        for i in range(3):
            bus.publish(ALERTS_TOPIC, alert(id=i))
        await hooks.stop(grace_s=5)

    asyncio.run(main())
    assert [b["id"] for b in r.bodies()] == [0, 1, 2] and outcomes(metrics) == {"delivered": 3}


def test_the_log_names_the_site_not_the_secret_in_the_url() -> None:
    hook = Webhook("https://user:pw@hooks.example.com:8443/services/T0/B0/XYZ?token=abc", LocalBus(1), Metrics(),
                   WebhookPolicy())  # fmt: skip
    assert hook.name == "https://hooks.example.com:8443"


@pytest.mark.ped2
def test_a_cameras_alert_reaches_a_configured_webhook(serve_factory, rtsp_factory, h264_clip, receivers) -> None:
    """The real server: an RTSP camera whose every frame is above `on` opens an alert, and the receiver gets its
    alert_open, signed with the configured secret, the same alert the REST API lists."""
    r = receivers()
    rtsp = rtsp_factory(h264_clip)
    server = serve_factory("--alert-webhooks", json.dumps([r.url]), "--alert-webhook-secret", SECRET.decode())
    with server.client() as c:
        body = {"url": rtsp.url, "name": "gate", "alert_on": 0, "alert_off": 0}
        sid = c.post("/api/streams", json=body).json()["id"]
        wait_for(lambda: r.requests, 60, message="the webhook's first request")
        alerts = c.get("/api/alerts", params={"stream": sid}).json()
        metrics = c.get("/metrics").text
    _, headers, raw = r.requests[0]
    message = json.loads(raw)
    assert message["type"] == "alert_open" and message["stream"] == sid and message["name"] == "gate"
    assert message["id"] in {a["id"] for a in alerts["items"]}
    assert headers["X-MNAD-Signature"] == "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
    assert 'mnad_webhook_deliveries_total{outcome="delivered"}' in metrics


def test_settings_refuse_a_webhook_that_is_not_http_and_an_empty_secret() -> None:
    for url in ("ftp://hooks.example.com/x", "file:///tmp/hook", "https:///no-host"):
        with pytest.raises(ValidationError, match="not an http"):
            Settings(_env_file=None, alert_webhooks=[url])
    with pytest.raises(ValidationError, match="set but empty"):
        Settings(_env_file=None, alert_webhook_secret=" ")
    ok = Settings(_env_file=None, alert_webhooks=["https://hooks.example.com/T0/XYZ"], alert_webhook_secret="k")
    assert Webhooks.from_settings(ok, LocalBus(1), Metrics()).hooks[0].policy.secret == b"k"
