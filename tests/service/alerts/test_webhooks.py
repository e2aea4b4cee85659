"""Alert webhooks (service.alerts.webhooks) through the outbox of a real SQLite store, against a real HTTP receiver
on loopback: the body is the alert's JSON, signed; failures that may pass are retried until the alert is too old,
refusals are not; a receiver that is down gets everything, in order, once back, and holds up no other URL; what
a stop left in the outbox goes out at the next start; a new URL does not replay history. Then the real server: an
RTSP camera's alert reaches a configured webhook, signed, counted on /metrics, and one stored while the receiver
was down survives a kill -9 of the server."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import free_port
from pydantic import ValidationError
from support import wait_for

from service.alerts.episodes import ALERTS_TOPIC
from service.alerts.webhooks import Webhook, WebhookPolicy, Webhooks, outbox_writer
from service.core.bus import LocalBus
from service.core.messages import AlertClose, AlertOpen
from service.core.metrics import Metrics
from service.core.settings import Settings
from service.core.store import SqliteStore

SECRET = b"s3cret"


class Receiver:
    """A loopback HTTP server that records each POST (time, headers, body) and answers from a script of statuses
    (the last one repeats), each after `delay_s`."""

    def __init__(self, statuses: tuple[int, ...] = (200,), delay_s: float = 0.0, port: int = 0) -> None:
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

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
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

    def make(*statuses: int, delay_s: float = 0.0, port: int = 0) -> Receiver:
        made.append(Receiver(statuses or (200,), delay_s, port))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path / "mnad.db")
    yield s
    s.close()


def alert(kind: type = AlertOpen, id: int = 1, stream: str = "gate") -> AlertOpen | AlertClose:
    return kind(stream=stream, name=stream, id=id, start_frame=10, start_time=1.5, end_frame=None, end_time=None,
                peak_score=0.9, peak_frame=11, thumbnail_url=None, heatmap_url=None)  # fmt: skip


def outcomes(metrics: Metrics) -> dict[str, float]:
    return {s.labels["outcome"]: s.value for m in metrics.webhook_deliveries.collect() for s in m.samples
            if s.name.endswith("_total") and s.value}  # fmt: skip


FAST = WebhookPolicy(timeout_s=2, backoff_s=0.01, secret=SECRET)


def run(store, urls: list[str], scenario, policy: WebhookPolicy = FAST, grace_s: float = 0) -> Metrics:
    """`scenario(emit, hooks)` on an event loop with the webhooks running on `store` and a LocalBus; `emit(message)`
    does what the alert writer does with a stored alert: into the outbox, then published. Returns the metrics."""
    metrics = Metrics()

    async def main() -> None:
        bus = LocalBus(64)
        hooks = Webhooks(urls, store, bus, metrics, policy)
        put = outbox_writer(store, policy.max_age_s)

        def emit(message: AlertOpen | AlertClose) -> None:
            put(message)
            bus.publish(ALERTS_TOPIC, message)

        hooks.start()
        try:
            await scenario(emit, hooks)
        finally:
            await hooks.stop(grace_s=grace_s)

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


def test_an_alert_is_posted_as_its_json_signed_in_order(receivers, store) -> None:
    r = receivers()
    sent: list[str] = []

    async def scenario(emit, hooks) -> None:
        for message in (alert(AlertOpen), alert(AlertClose)):
            emit(message)
            sent.append(message.wire())
        await until(lambda: len(r.requests) == 2 and idle(hooks))  # received, and counted by the sender

    metrics = run(store, [r.url], scenario)
    assert [body.decode() for _, _, body in r.requests] == sent  # the alert's JSON, byte for byte, in order
    for (_, headers, body), kind in zip(r.requests, ("alert_open", "alert_close"), strict=True):
        assert headers["Content-Type"] == "application/json" and headers["X-MNAD-Event"] == kind
        assert headers["X-MNAD-Delivery"] == f"gate:1:{kind}"
        assert headers["X-MNAD-Signature"] == "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert outcomes(metrics) == {"delivered": 2}
    assert url_secret_absent(store, r.url)


def url_secret_absent(store, url: str) -> bool:
    """The store keeps a digest of each URL, never the URL (its path or query may be the receiver's secret)."""
    dump = "\n".join(store._db.iterdump())
    return "token=abc" not in dump and url not in dump


def test_unsigned_without_a_secret(receivers, store) -> None:
    r = receivers()

    async def scenario(emit, hooks) -> None:
        emit(alert())
        await until(lambda: r.requests)

    run(store, [r.url], scenario, WebhookPolicy(timeout_s=2))
    assert "X-MNAD-Signature" not in r.requests[0][1]


def test_what_may_pass_later_is_retried_what_the_receiver_refuses_is_not(receivers, store) -> None:
    flaky, refusing = receivers(503, 429, 200), receivers(400)

    async def scenario(emit, hooks) -> None:
        emit(alert())
        await until(lambda: len(flaky.requests) == 3 and idle(hooks))

    metrics = run(store, [flaky.url, refusing.url], scenario)
    assert len(refusing.requests) == 1
    assert len({body for _, _, body in flaky.requests}) == 1  # the same body each time
    waits = [b[0] - a[0] for a, b in zip(flaky.requests, flaky.requests[1:], strict=False)]
    assert waits[1] > waits[0] >= 0.01  # backoff doubles
    assert outcomes(metrics) == {"delivered": 1, "refused": 1}


def test_a_receiver_down_for_a_while_gets_every_alert_in_order_once_back(receivers, store) -> None:
    """Down for its first eight requests (503, then refused connections would do the same): nothing is lost, the
    first alert is retried at the head of the line and the later ones follow it, in order."""
    r = receivers(*(503,) * 8, 200)

    async def scenario(emit, hooks) -> None:
        for i in range(4):
            emit(alert(id=i))
        await until(lambda: len(r.requests) == 8 + 4 and idle(hooks), 20)

    metrics = run(store, [r.url], scenario)
    assert [body["id"] for body in r.bodies()] == [0] * 9 + [1, 2, 3]
    assert outcomes(metrics) == {"delivered": 4}


def test_a_dead_receiver_gives_up_when_the_alert_is_too_old_and_holds_up_no_other_url(receivers, store) -> None:
    healthy = receivers()
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens
    policy = WebhookPolicy(timeout_s=2, max_age_s=1.5, backoff_s=0.2)

    async def scenario(emit, hooks) -> None:
        started = time.monotonic()
        emit(alert())
        await until(lambda: healthy.requests)
        assert healthy.requests[0][0] - started < 0.2  # before the dead URL's first retry
        await until(lambda: outcomes(hooks.hooks[0].metrics).get("failed"), 10)
        assert time.monotonic() - started >= 1.0  # retried until the alert was old (0.2 + 0.4 + 0.8 s of waits)

    metrics = run(store, [dead, healthy.url], scenario, policy)
    assert outcomes(metrics) == {"delivered": 1, "failed": 1}


def test_what_a_stop_left_in_the_outbox_goes_out_at_the_next_start(receivers, store) -> None:
    """The receiver is down while two alerts happen and the service stops (or crashes: the outbox is already
    written); at the next start, with the receiver back on the same address, both arrive, in order."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"

    async def down(emit, hooks) -> None:
        emit(alert(AlertOpen))
        emit(alert(AlertClose))
        await until(lambda: hooks.hooks[0].backlog._value.get() == 2)

    first = run(store, [url], down)
    assert outcomes(first) == {}  # nothing given up
    r = receivers(port=port)

    async def back(emit, hooks) -> None:
        await until(lambda: len(r.requests) == 2 and idle(hooks))

    second = run(store, [url], back)
    assert [(b["type"], b["id"]) for b in r.bodies()] == [("alert_open", 1), ("alert_close", 1)]
    assert outcomes(second) == {"delivered": 2}


def test_a_new_url_starts_with_the_next_alert_not_the_history(receivers, store) -> None:
    old, new = receivers(), receivers()

    async def before(emit, hooks) -> None:
        emit(alert(id=1))
        await until(lambda: old.requests and idle(hooks))

    run(store, [old.url], before)

    async def after(emit, hooks) -> None:
        emit(alert(id=2))
        await until(lambda: len(old.requests) == 2 and new.requests and idle(hooks))

    run(store, [old.url, new.url], after)
    assert [b["id"] for b in old.bodies()] == [1, 2] and [b["id"] for b in new.bodies()] == [2]


def test_a_stop_lets_the_outbox_go_out_within_its_grace(receivers, store) -> None:
    r = receivers(delay_s=0.1)

    async def scenario(emit, hooks) -> None:
        for i in range(3):
            emit(alert(id=i))

    metrics = run(store, [r.url], scenario, WebhookPolicy(timeout_s=2), grace_s=5)
    assert [b["id"] for b in r.bodies()] == [0, 1, 2] and outcomes(metrics) == {"delivered": 3}


class Hostile:
    """A loopback TCP server that reads each request's head and then runs `answer(conn)`: receivers no HTTP
    server library would play."""

    def __init__(self, answer) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.answer, self.stopped = answer, threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            self.answer(conn, self.stopped)

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


def endless_body(conn: socket.socket, stopped: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n")
    while not stopped.is_set():
        conn.sendall(b"x" * 65536)


def trickle(conn: socket.socket, stopped: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    while not stopped.wait(0.2):
        conn.sendall(b"x")


def test_a_hostile_receiver_costs_one_timeout_per_attempt_and_no_memory(store) -> None:
    """A receiver answering 200 with an endless body is delivered at once (the body is never read); one that
    trickles its headers a byte at a time (each read within httpx's timeout) is cut at timeout_s per attempt."""
    flood, slow = Hostile(endless_body), Hostile(trickle)
    policy = WebhookPolicy(timeout_s=1, max_age_s=2.5, backoff_s=0.1)
    started = time.monotonic()

    async def scenario(emit, hooks) -> None:
        emit(alert())
        await until(lambda: outcomes(hooks.hooks[0].metrics).get("failed") == 1, 10)

    try:
        metrics = run(store, [flood.url, slow.url], scenario, policy)
    finally:
        flood.close()
        slow.close()
    assert outcomes(metrics) == {"delivered": 1, "failed": 1}
    assert time.monotonic() - started < 6  # about max_age_s, not the trickle's pace


def test_the_log_names_the_site_not_the_secret_in_the_url(store) -> None:
    hook = Webhook("https://user:pw@hooks.example.com:8443/services/T0/B0/XYZ?token=abc", 0, store, Metrics(),
                   WebhookPolicy(), "local")  # fmt: skip
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


@pytest.mark.ped2
def test_an_alert_stored_while_the_receiver_was_down_survives_a_kill_9(serve_factory, rtsp_factory, h264_clip,
                                                                        receivers) -> None:  # fmt: skip
    """The receiver is down when a camera's alert opens; the server is killed (SIGKILL: nothing runs on the way
    out) with the alert in its outbox; restarted on the same data with the receiver back, it sends that alert."""
    port = free_port()
    flags = ("--alert-webhooks", json.dumps([f"http://127.0.0.1:{port}/hook"]), "--alert-webhook-max-age-s", "600")
    rtsp = rtsp_factory(h264_clip)
    first = serve_factory(*flags)
    with first.client() as c:
        body = {"url": rtsp.url, "name": "gate", "alert_on": 0, "alert_off": 0}
        sid = c.post("/api/streams", json=body).json()["id"]
        backlog = re.compile(r'^mnad_webhook_backlog\{receiver="0"\} ([0-9.]+)$', re.M)
        wait_for(lambda: float(backlog.search(c.get("/metrics").text)[1]) >= 1, 60, message="an event in the outbox")
        first_alert = min(a["id"] for a in c.get("/api/alerts", params={"stream": sid}).json()["items"])
    first.proc.kill()
    first.proc.wait(10)
    r = receivers(port=port)
    serve_factory(*flags, data_dir=first.data_dir)
    wait_for(lambda: r.requests, 60, message="the webhook's first request after the restart")
    message = json.loads(r.requests[0][2])
    assert (message["type"], message["id"], message["stream"]) == ("alert_open", first_alert, sid)
    assert r.requests[0][1]["X-MNAD-Delivery"] == f"{sid}:{first_alert}:alert_open"


def test_settings_refuse_a_webhook_that_is_not_http_and_an_empty_secret(store) -> None:
    for url in ("ftp://hooks.example.com/x", "file:///tmp/hook", "https:///no-host"):
        with pytest.raises(ValidationError, match="not an http"):
            Settings(_env_file=None, alert_webhooks=[url])
    with pytest.raises(ValidationError, match="set but empty"):
        Settings(_env_file=None, alert_webhook_secret=" ")
    ok = Settings(_env_file=None, alert_webhooks=["https://hooks.example.com/T0/XYZ"], alert_webhook_secret="k")
    assert Webhooks.from_settings(ok, store, LocalBus(1), Metrics()).hooks[0].policy.secret == b"k"
