"""Redis pub/sub as the bus of cluster mode: shards publish every score and alert event on one channel, each
API node subscribes and hands them to its own in-process hub, which fans them out to its WebSockets.

One channel keeps the order of a camera's messages as its shard published them. Each envelope names the
camera's epoch: an API node drops a message under an older epoch than one it already saw for that camera
(a shard cut off and resumed after its camera moved), so clients never get two shards' scores for one camera.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import redis
from pydantic import BaseModel, ConfigDict

from service.core.bus import LocalBus
from service.core.messages import Message, Published, parse

log = logging.getLogger(__name__)

CHANNEL = "mnad:messages"


class Envelope(BaseModel):
    """What crosses the bus: the hub topic, the message's wire text, and who sent it under which epoch."""

    model_config = ConfigDict(extra="forbid")

    topic: str
    text: str
    shard: str
    stream: str | None = None
    epoch: int | None = None


class RedisPublisher:
    """A shard's side: publish (topic, message) pairs with the camera's epoch, in one round trip per batch."""

    def __init__(self, url: str, shard: str, channel: str = CHANNEL) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.shard, self.channel = shard, channel
        self.errors = 0

    def publish(self, messages: Published, epochs: dict[str, int]) -> int:
        """Messages of cameras this shard no longer runs (absent from `epochs`) are not sent. Returns the count."""
        pipe = self._redis.pipeline(transaction=False)
        sent = 0
        for topic, message in messages:
            stream = getattr(message, "stream", None)
            epoch = epochs.get(stream) if stream is not None else None
            if stream is not None and epoch is None:
                continue
            envelope = Envelope(topic=topic, text=message.wire(), shard=self.shard, stream=stream, epoch=epoch)
            pipe.publish(self.channel, envelope.model_dump_json())
            sent += 1
        if sent:
            try:
                pipe.execute()
            except redis.RedisError:
                self.errors += 1  # the bus is down: scores are live data, the next ones will go
                log.warning("publishing %d message(s) failed", sent, exc_info=True)
                return 0
        return sent

    def broadcast(self, messages: Published) -> int:
        """An API node's side: messages no camera's epoch governs (an operator's review), to every API node
        (this one included: it fans them out when they come back). Returns the count sent."""
        pipe = self._redis.pipeline(transaction=False)
        for topic, message in messages:
            pipe.publish(self.channel, Envelope(topic=topic, text=message.wire(), shard=self.shard).model_dump_json())
        try:
            pipe.execute()
        except redis.RedisError:
            self.errors += 1
            log.warning("broadcasting %d message(s) failed", len(messages), exc_info=True)
            return 0
        return len(messages)

    def close(self) -> None:
        self._redis.close()


class RedisSubscriber:
    """An API node's side: a thread reading the channel, delivering (topic, message) to `deliver` (which hands
    them to the hub on the event loop). Reconnects after a Redis outage; messages sent meanwhile are lost, as
    pub/sub does not keep them (scores are live, alerts are in PostgreSQL)."""

    def __init__(self, url: str, deliver: Callable[[Published], None], channel: str = CHANNEL) -> None:
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=5)
        self._deliver, self.channel = deliver, channel
        self._epochs: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bus-subscriber", daemon=True)
        self.stale = 0  # messages dropped for an epoch older than one seen
        self.received = 0
        self.failed = 0  # messages whose delivery raised (logged)
        self.subscribed = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._redis.close()

    def accept(self, envelope: Envelope) -> Message | None:
        """The message, or None when its epoch is older than the newest seen for its camera."""
        if envelope.stream is not None and envelope.epoch is not None:
            newest = self._epochs.get(envelope.stream, 0)
            if envelope.epoch < newest:
                self.stale += 1
                return None
            self._epochs[envelope.stream] = envelope.epoch
        return parse(envelope.text)

    def _run(self) -> None:
        while not self._stop.is_set():
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                self.subscribed.set()
                while not self._stop.is_set():
                    raw = pubsub.get_message(timeout=0.5)
                    if raw is None or raw.get("type") != "message":
                        continue
                    self.received += 1
                    try:
                        envelope = Envelope.model_validate_json(raw["data"])
                        message = self.accept(envelope)
                    except ValueError:
                        log.warning("unreadable message on %s dropped", self.channel, exc_info=True)
                        continue
                    if message is not None:
                        try:
                            self._deliver([(envelope.topic, message)])
                        except Exception:  # one subscriber's bug must not end this node's feed of every camera
                            self.failed += 1
                            log.exception("delivering a bus message failed")
            except redis.RedisError:
                self.subscribed.clear()
                log.warning("bus subscription lost; resubscribing in 1 s", exc_info=True)
                time.sleep(1)
            finally:
                pubsub.close()


class RedisBus(LocalBus):
    """`Bus` of an API node: this node's WebSocket subscribers, as LocalBus keeps them, fed by the Redis channel
    (every shard's scores and alert events). What this node publishes itself (its uploads' clip scores) stays
    local: those clips are scored here."""

    def __init__(
        self, url: str, queue_size: int, on_drop: Callable[[str, int], None] | None = None,
        seen: Callable[[Published], None] | None = None, channel: str = CHANNEL,
    ) -> None:  # fmt: skip
        super().__init__(queue_size, on_drop)
        self._seen = seen
        self._loop: asyncio.AbstractEventLoop | None = None
        self.subscriber = RedisSubscriber(url, self._from_redis, channel)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.subscriber.start()

    def stop(self) -> None:
        self.subscriber.stop()

    def _from_redis(self, messages: Published) -> None:
        """Subscriber thread: hand the messages to the event loop, where the local fan-out runs."""
        if self._seen is not None:
            self._seen(messages)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.publish_many, messages)
