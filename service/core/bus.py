"""Published messages: `Bus` is what the service asks of them, and all it depends on; `LocalBus` fans them out
in this process. A later mode (several machines) implements `Bus` over a shared broker, still handing each
subscriber its messages through a `Subscriber` queue here.

Every subscriber has its own bounded queue, so a slow one only loses its own messages (the oldest, counted and
told to it) and never slows the stream or the other subscribers. Runs on the event loop; the engine thread
hands it messages with loop.call_soon_threadsafe (`Runtime.publish`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from service.core.messages import Dropped, Message, Published

Item = tuple[str, Message]  # (the JSON text sent, the message it says)


@dataclass(eq=False)
class Subscriber:
    topic: str
    queue: asyncio.Queue[Item]
    dropped: int = 0  # total messages this subscriber lost
    unreported: int = 0  # lost since it was last told


@runtime_checkable
class Bus(Protocol):
    """Topics of typed messages (service.core.messages), numbered per topic (`seq`), each subscriber with its own
    bounded queue. Called on the event loop."""

    def subscribe(self, topic: str) -> Subscriber: ...
    def unsubscribe(self, sub: Subscriber) -> None: ...
    def subscribers(self, topic: str | None = None) -> int:
        """Subscribers of a topic, or of every topic (this process's)."""
        ...

    def publish(self, topic: str, message: Message) -> None: ...
    def publish_many(self, messages: Published) -> None: ...
    def discard(self, sub: Subscriber, stale: Callable[[Message], bool]) -> None:
        """Remove the queued messages `stale` says the subscriber already has (e.g. sent from a backlog)."""
        ...

    async def next(self, sub: Subscriber) -> list[Item]:
        """The next message for `sub`, preceded by a `Dropped` notice when it lost some since the last one."""
        ...


@dataclass
class LocalBus:
    """`Bus` within this process."""

    queue_size: int
    on_drop: Callable[[str, int], None] | None = None  # (topic, n) -> metrics
    _topics: dict[str, set[Subscriber]] = field(default_factory=dict)
    _seq: dict[str, int] = field(default_factory=dict)

    def subscribe(self, topic: str) -> Subscriber:
        sub = Subscriber(topic, asyncio.Queue(self.queue_size))
        self._topics.setdefault(topic, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._topics.get(sub.topic)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._topics[sub.topic]

    def subscribers(self, topic: str | None = None) -> int:
        if topic is not None:
            return len(self._topics.get(topic, ()))
        return sum(len(s) for s in self._topics.values())

    def publish(self, topic: str, message: Message) -> None:
        """Number the message per topic (gaps = drops), serialize once, enqueue for every subscriber."""
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + 1
        subs = self._topics.get(topic)
        if not subs:
            return
        item = (message.wire(seq), message)
        for sub in subs:
            if sub.queue.full():
                sub.queue.get_nowait()
                sub.dropped += 1
                sub.unreported += 1
                if self.on_drop is not None:
                    self.on_drop(topic, 1)
            sub.queue.put_nowait(item)

    def publish_many(self, messages: Published) -> None:
        for topic, message in messages:
            self.publish(topic, message)

    def discard(self, sub: Subscriber, stale: Callable[[Message], bool]) -> None:
        """Remove the queued messages `stale` says the subscriber already has (e.g. sent from a backlog)."""
        kept = []
        while not sub.queue.empty():
            item = sub.queue.get_nowait()
            if not stale(item[1]):
                kept.append(item)
        for item in kept:
            sub.queue.put_nowait(item)

    async def next(self, sub: Subscriber) -> list[Item]:
        """The next message for `sub`, preceded by a drop notice when it lost some since the last one."""
        item = await sub.queue.get()
        out: list[Item] = []
        if sub.unreported:
            notice = Dropped(topic=sub.topic, dropped=sub.unreported, total_dropped=sub.dropped)
            out.append((notice.wire(), notice))
            sub.unreported = 0
        out.append(item)
        return out
