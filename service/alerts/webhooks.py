"""Alert webhooks: every alert_open and alert_close POSTed to the operator's URLs (a chat bot, a home automation
hub, an incident tool), so an alert reaches people who are not watching the dashboard.

One task per URL reads the alerts topic through its own bounded bus queue, in order: a slow or dead receiver
only loses its own oldest messages (counted, like a slow WebSocket client's) and never slows the streams, the
WebSocket clients or the other URLs. A delivery is retried with backoff after a network error, a timeout, a
429 or a 5xx; any other status is the receiver's answer and is not retried. The body is the WebSocket message's
JSON text; `X-MNAD-Delivery` is the same for every copy of one event (retries, several API nodes), so a
receiver can drop duplicates; with a secret, `X-MNAD-Signature` is `sha256=` and the HMAC-SHA256 of the body.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from dataclasses import dataclass

import httpx

from service.alerts.episodes import ALERTS_TOPIC
from service.core.bus import Bus, Subscriber
from service.core.messages import AlertClose, AlertOpen, Dropped
from service.core.metrics import Metrics
from service.core.policy import site
from service.core.settings import Settings

log = logging.getLogger(__name__)

USER_AGENT = "mnad-service/0.1.0"


@dataclass(frozen=True)
class WebhookPolicy:
    timeout_s: float = 5.0  # per attempt: connect, send and the receiver's answer
    retries: int = 3  # attempts after the first
    backoff_s: float = 1.0  # wait before the first retry; doubles per retry, at most MAX_BACKOFF_S
    secret: bytes | None = None


MAX_BACKOFF_S = 30.0


def signature(secret: bytes, body: bytes) -> str:
    """What X-MNAD-Signature carries: a receiver recomputes it over the raw body with the shared secret."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def retryable(status: int) -> bool:
    return status == 429 or status >= 500


class Webhook:
    """Deliveries to one URL, in the order the alerts happened."""

    def __init__(self, url: str, bus: Bus, metrics: Metrics, policy: WebhookPolicy) -> None:
        self.url, self.bus, self.metrics, self.policy = url, bus, metrics, policy
        self.name = site(url)
        self.sub: Subscriber | None = None
        self.busy = False  # a message taken off the queue and not yet delivered or given up

    def idle(self) -> bool:
        return not self.busy and (self.sub is None or self.sub.queue.empty())

    async def run(self) -> None:
        """Subscribe, then deliver until cancelled. Call `subscribe` first where no alert may be missed."""
        sub = self.sub or self.subscribe()
        try:
            async with httpx.AsyncClient(timeout=self.policy.timeout_s, follow_redirects=False) as client:
                while True:
                    items = await self.bus.next(sub)
                    self.busy = True
                    for text, message in items:
                        if isinstance(message, Dropped):
                            self.metrics.webhook_deliveries.labels("dropped").inc(message.dropped)
                            log.warning("webhook %s: %d alert message(s) dropped, the receiver is too slow",
                                        self.name, message.dropped)  # fmt: skip
                        elif isinstance(message, (AlertOpen, AlertClose)):
                            try:
                                await self.deliver(client, text, message)
                            except Exception:  # a bug here must not end this URL's deliveries
                                self.metrics.webhook_deliveries.labels("failed").inc()
                                log.exception("webhook %s: %s of alert %s failed", self.name, message.type, message.id)
                    self.busy = False
        finally:
            self.busy = False
            self.bus.unsubscribe(sub)
            self.sub = None

    def subscribe(self) -> Subscriber:
        self.sub = self.bus.subscribe(ALERTS_TOPIC)
        return self.sub

    async def deliver(self, client: httpx.AsyncClient, text: str, message: AlertOpen | AlertClose) -> str:
        """POST one message, retrying what may pass later; the outcome counted and returned: delivered, refused
        (the receiver answered with a status that a retry will not change) or failed (retries spent)."""
        body = text.encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-MNAD-Event": message.type,
                   "X-MNAD-Delivery": f"{message.stream}:{message.id}:{message.type}"}  # fmt: skip
        if self.policy.secret is not None:
            headers["X-MNAD-Signature"] = signature(self.policy.secret, body)
        outcome, reason = "failed", ""
        for attempt in range(self.policy.retries + 1):
            if attempt:
                await asyncio.sleep(min(MAX_BACKOFF_S, self.policy.backoff_s * 2 ** (attempt - 1)))
            try:
                response = await client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as e:  # refused, unreachable, timed out, reset
                reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                continue
            if response.is_success:
                outcome = "delivered"
                break
            reason = f"HTTP {response.status_code}"
            if not retryable(response.status_code):
                outcome = "refused"
                break
        self.metrics.webhook_deliveries.labels(outcome).inc()
        if outcome != "delivered":
            log.warning("webhook %s: %s of alert %s (%s) %s after %d attempt(s): %s", self.name, message.type,
                        message.id, message.stream, outcome, attempt + 1, reason)  # fmt: skip
        return outcome


class Webhooks:
    """The configured URLs' delivery tasks, started and stopped with the service."""

    def __init__(self, urls: list[str], bus: Bus, metrics: Metrics, policy: WebhookPolicy) -> None:
        self.hooks = [Webhook(url, bus, metrics, policy) for url in urls]
        self._tasks: list[asyncio.Task] = []

    @classmethod
    def from_settings(cls, settings: Settings, bus: Bus, metrics: Metrics) -> Webhooks:
        secret = settings.alert_webhook_secret
        policy = WebhookPolicy(settings.alert_webhook_timeout_s, settings.alert_webhook_retries,
                               secret=secret.get_secret_value().encode() if secret is not None else None)  # fmt: skip
        return cls(settings.alert_webhooks, bus, metrics, policy)

    def start(self) -> None:
        """On the event loop: subscribed before this returns, so no alert published from here on is missed."""
        for hook in self.hooks:
            hook.subscribe()
        self._tasks = [asyncio.create_task(hook.run(), name=f"webhook-{i}") for i, hook in enumerate(self.hooks)]

    async def stop(self, grace_s: float | None = None) -> None:
        """Let queued alerts go out for up to `grace_s` (default: one attempt's timeout), then stop; what is left
        is lost, and counted as dropped."""
        grace = self.hooks[0].policy.timeout_s if grace_s is None and self.hooks else grace_s or 0.0
        deadline = asyncio.get_running_loop().time() + grace
        while not all(hook.idle() for hook in self.hooks) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for hook in self.hooks:
            if hook.sub is not None and (left := hook.sub.queue.qsize()):
                hook.metrics.webhook_deliveries.labels("dropped").inc(left)
                log.warning("webhook %s: %d alert message(s) not sent before the service stopped", hook.name, left)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
