"""WebSocket fan-out: every subscriber has its own bounded queue, so a slow one only loses its own
messages (the oldest, counted and told to it) and never slows the stream or the other subscribers.

Runs on the event loop; the engine thread hands it messages with loop.call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Subscriber:
    topic: str
    queue: asyncio.Queue[tuple[str, float | None]]
    dropped: int = 0  # total messages this subscriber lost
    unreported: int = 0  # lost since it was last told


@dataclass
class Hub:
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

    def publish(self, topic: str, message: dict[str, Any]) -> None:
        """Number the message per topic (gaps = drops), serialize once, enqueue for every subscriber."""
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + 1
        subs = self._topics.get(topic)
        if not subs:
            return
        message["seq"] = seq
        item = (json.dumps(message), message.get("captured"))
        for sub in subs:
            if sub.queue.full():
                sub.queue.get_nowait()
                sub.dropped += 1
                sub.unreported += 1
                if self.on_drop is not None:
                    self.on_drop(topic, 1)
            sub.queue.put_nowait(item)

    def publish_many(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        for topic, message in messages:
            self.publish(topic, message)

    async def next(self, sub: Subscriber) -> list[tuple[str, float | None]]:
        """The next message for `sub`, preceded by a drop notice when it lost some since the last one."""
        text, captured = await sub.queue.get()
        out: list[tuple[str, float | None]] = []
        if sub.unreported:
            notice = {"type": "dropped", "topic": sub.topic, "dropped": sub.unreported, "total_dropped": sub.dropped}
            out.append((json.dumps(notice), None))
            sub.unreported = 0
        out.append((text, captured))
        return out
