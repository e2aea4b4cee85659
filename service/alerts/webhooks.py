"""Alert webhooks: every alert_open and alert_close POSTed to the operator's URLs (a chat bot, a home automation
hub, an incident tool), so an alert reaches people who are not watching the dashboard.

An alert must not be lost to a receiver that is down for a while, nor to a restart or a crash of the service.
So webhooks go through an outbox in the store: the alert writer appends each alert event to it once the alert is
stored (`outbox_writer`), and one task per URL sends the events after that URL's cursor, in order, moving the
cursor past each one delivered or refused. A delivery is retried with backoff after a network error, a timeout,
a 429 or a 5xx until the alert is `max_age_s` old; any other status is the receiver's answer and is not retried.
A failing receiver holds up only its own URL; the streams, the WebSocket clients and the other URLs never wait.

Several API nodes (cluster mode) share the store: a URL's cursor carries a lease, so one node sends it at a
time and another takes over when that node is gone. A delivery cut off by a crash is sent again (at least once):
`X-MNAD-Delivery` is the same for every copy of one event, so a receiver can drop repeats. The body is the
alert message's JSON (as on the WebSocket, without `seq`); with a secret, `X-MNAD-Signature` is `sha256=` and
the HMAC-SHA256 of the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from service.alerts.episodes import ALERTS_TOPIC
from service.core.bus import Bus, Subscriber
from service.core.messages import AlertClose, AlertOpen
from service.core.metrics import Metrics
from service.core.policy import site
from service.core.settings import Settings
from service.core.store import Store

log = logging.getLogger(__name__)

USER_AGENT = "mnad-service/0.1.0"
MAX_BACKOFF_S = 30.0
BATCH = 32  # outbox events read at a time
LOCAL = "local"  # the holder name of a single process: after a crash its own lease is still its own


@dataclass(frozen=True)
class WebhookPolicy:
    timeout_s: float = 5.0  # per attempt: connect, send and the receiver's answer
    max_age_s: float = 3600.0  # retried until the alert is this old, then given up
    backoff_s: float = 1.0  # wait before the first retry; doubles per retry, at most MAX_BACKOFF_S
    secret: bytes | None = None
    lease_s: float = 30.0  # another node takes a URL over this long after its holder was last heard of (> timeout_s)
    poll_s: float = 1.0  # the outbox is read at least this often (events the bus did not ring for: other nodes')


def signature(secret: bytes, body: bytes) -> str:
    """What X-MNAD-Signature carries: a receiver recomputes it over the raw body with the shared secret."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def retryable(status: int) -> bool:
    return status == 429 or status >= 500


def receiver_key(url: str) -> str:
    """A URL's name in the store: a digest, since many webhook URLs carry their secret in the path or query."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def outbox_writer(store: Store, max_age_s: float) -> Callable[[AlertOpen | AlertClose], None]:
    """For the alert writer: append a stored alert's event to the outbox (kept twice as long as it may be sent)."""

    def put(message: AlertOpen | AlertClose) -> None:
        delivery = f"{message.stream}:{message.id}:{message.type}"
        store.add_webhook_event(delivery, message.type, message.wire(), 2 * max_age_s)

    return put


class Webhook:
    """Deliveries to one URL, in the order the alerts were stored, from its cursor in the store."""

    def __init__(
        self, url: str, index: int, store: Store, metrics: Metrics, policy: WebhookPolicy, holder: str
    ) -> None:
        self.url, self.store, self.metrics, self.policy, self.holder = url, store, metrics, policy, holder
        self.name = site(url)
        self.receiver = receiver_key(url)
        self.backlog = metrics.webhook_backlog.labels(str(index))
        self.bell = asyncio.Event()  # rung when an alert is published here: read the outbox now
        self.busy = False  # holds events it has not finished with
        self.passes = 0  # outbox passes begun
        self.last_clean = 0  # the last pass that left nothing to send (or found another node holding the URL)

    def idle(self) -> bool:
        return not self.busy

    async def run(self) -> None:
        """Read the outbox and deliver, until cancelled; a pass that fails (the database unreachable) is retried."""
        async with httpx.AsyncClient(timeout=self.policy.timeout_s, follow_redirects=False) as client:
            while True:
                self.bell.clear()
                self.passes += 1
                number = self.passes
                try:
                    if await self.drain(client):
                        self.last_clean = number
                except Exception:
                    log.exception("webhook %s: reading the outbox failed; trying again", self.name)
                finally:
                    self.busy = False
                with contextlib.suppress(TimeoutError):  # not wait_for: 3.11's can swallow a cancel
                    async with asyncio.timeout(self.policy.poll_s):
                        await self.bell.wait()

    async def drain(self, client: httpx.AsyncClient) -> bool:
        """Send what the outbox holds after this URL's cursor, while this node holds the URL's lease; whether it
        left nothing to send (or another node holds the URL)."""
        last = await asyncio.to_thread(self.store.claim_webhook, self.receiver, self.holder, self.policy.lease_s)
        if last is None:  # another node sends this URL
            self.backlog.set(0)
            return True
        while True:
            events = await asyncio.to_thread(self.store.webhook_events_after, last, self.store.WEBHOOK_SETTLE_S, BATCH)
            self.backlog.set(await asyncio.to_thread(self.store.webhook_backlog, last))
            if not events:
                return True
            self.busy = True
            for event in events:
                if await self.deliver(client, event) is None:
                    return True  # the lease went to another node: it sends this event
                moved = self.store.advance_webhook
                if not await asyncio.to_thread(moved, self.receiver, self.holder, event["id"], self.policy.lease_s):
                    return True
                last = event["id"]

    async def deliver(self, client: httpx.AsyncClient, event: dict[str, Any]) -> str | None:
        """POST one outbox event, retrying what may pass later while the alert is young enough; the outcome
        counted and returned: delivered, refused (a status a retry will not change) or failed (too old). None
        when this node lost the URL's lease meanwhile (nothing counted: the new holder sends it)."""
        body = event["body"].encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-MNAD-Event": event["event"],
                   "X-MNAD-Delivery": event["delivery"]}  # fmt: skip
        if self.policy.secret is not None:
            headers["X-MNAD-Signature"] = signature(self.policy.secret, body)
        loop = asyncio.get_running_loop()
        born = loop.time() - event["age"]  # the alert's time on this loop's clock
        outcome, reason, attempts = "failed", f"older than {self.policy.max_age_s:g} s before it was sent", 0
        while loop.time() - born <= self.policy.max_age_s:
            if attempts:
                wait = min(MAX_BACKOFF_S, self.policy.backoff_s * 2 ** (attempts - 1))
                if loop.time() + wait - born > self.policy.max_age_s:
                    break
                if not await self.hold(wait):
                    return None
            attempts += 1
            try:
                status = await self.post(client, body, headers)
            except (httpx.HTTPError, TimeoutError) as e:  # refused, unreachable, timed out, reset
                reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                continue
            if 200 <= status < 300:
                outcome = "delivered"
                break
            reason = f"HTTP {status}"
            if not retryable(status):
                outcome = "refused"
                break
        self.metrics.webhook_deliveries.labels(outcome).inc()
        if outcome != "delivered":
            log.warning("webhook %s: %s %s after %d attempt(s): %s", self.name, event["delivery"], outcome, attempts,
                        reason)  # fmt: skip
        return outcome

    async def post(self, client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> int:
        """One attempt: the receiver's status. The whole attempt is bounded by timeout_s (httpx bounds each read,
        so a receiver trickling its answer could hold it forever), and the response body is never read."""
        async with asyncio.timeout(self.policy.timeout_s):
            async with client.stream("POST", self.url, content=body, headers=headers) as response:
                return response.status_code

    async def hold(self, seconds: float) -> bool:
        """Wait `seconds` with the URL's lease renewed as it goes (an outage outlasts a lease); False when another
        node took the URL meanwhile."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while True:
            claim = self.store.claim_webhook
            if await asyncio.to_thread(claim, self.receiver, self.holder, self.policy.lease_s) is None:
                return False
            if (left := end - loop.time()) <= 0:
                return True
            await asyncio.sleep(min(left, self.policy.lease_s / 3))


class Webhooks:
    """The configured URLs' delivery tasks, started and stopped with the service, rung by the alerts topic."""

    def __init__(
        self, urls: list[str], store: Store, bus: Bus, metrics: Metrics, policy: WebhookPolicy, holder: str = LOCAL
    ) -> None:
        self.store, self.bus, self.policy = store, bus, policy
        self.hooks = [Webhook(url, i, store, metrics, policy, holder) for i, url in enumerate(urls)]
        self._tasks: list[asyncio.Task] = []
        self._sub: Subscriber | None = None

    @classmethod
    def from_settings(cls, settings: Settings, store: Store, bus: Bus, metrics: Metrics, holder: str = LOCAL):
        secret = settings.alert_webhook_secret
        timeout = settings.alert_webhook_timeout_s
        policy = WebhookPolicy(timeout, settings.alert_webhook_max_age_s, lease_s=max(30.0, 3 * timeout),
                               secret=secret.get_secret_value().encode() if secret is not None else None)  # fmt: skip
        return cls(settings.alert_webhooks, store, bus, metrics, policy, holder)

    def outbox(self) -> Callable[[AlertOpen | AlertClose], None] | None:
        """What the alert writer puts alert events through; None (nothing kept) when no URL is configured."""
        return outbox_writer(self.store, self.policy.max_age_s) if self.hooks else None

    def start(self) -> None:
        """On the event loop, before any alert: each URL's cursor exists (a new URL starts at the newest event),
        so every alert stored from here on is sent."""
        if not self.hooks:
            return
        for hook in self.hooks:
            try:
                self.store.claim_webhook(hook.receiver, hook.holder, self.policy.lease_s)
            except Exception:  # the database unreachable: the URL's first pass makes its cursor
                log.exception("webhook %s: no cursor yet", hook.name)
        self._sub = self.bus.subscribe(ALERTS_TOPIC)
        self._tasks = [asyncio.create_task(hook.run(), name=f"webhook-{i}") for i, hook in enumerate(self.hooks)]
        self._tasks.append(asyncio.create_task(self._ring(self._sub), name="webhook-bell"))

    async def _ring(self, sub: Subscriber) -> None:
        while True:
            await self.bus.next(sub)
            for hook in self.hooks:
                hook.bell.set()

    async def stop(self, grace_s: float | None = None) -> None:
        """Let what the outbox holds go out for up to `grace_s` (default: one attempt's timeout), then stop and
        hand the URLs' leases back; what is left stays in the outbox for the next start (or another node)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.policy.timeout_s if grace_s is None else grace_s)
        begun = [hook.passes for hook in self.hooks]  # a clean pass begun after this saw every event stored before
        for hook in self.hooks:
            hook.bell.set()
        while loop.time() < deadline and any(h.last_clean <= n for h, n in zip(self.hooks, begun, strict=True)):
            await asyncio.sleep(0.02)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._sub is not None:
            self.bus.unsubscribe(self._sub)
            self._sub = None
        for hook in self.hooks:
            try:
                await asyncio.to_thread(self.store.release_webhook, hook.receiver, hook.holder)
            except Exception:
                log.exception("webhook %s: lease not handed back (it runs out in %g s)", hook.name, self.policy.lease_s)
