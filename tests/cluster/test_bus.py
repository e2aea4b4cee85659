"""The Redis bus on a real redis-server: messages arrive typed and in order; an older epoch is dropped."""

from __future__ import annotations

import threading

import parts
import pytest

pytestmark = pytest.mark.cluster


def score(stream: str, frame: int):
    from service.core.messages import StreamScore

    return StreamScore(stream=stream, frame=frame, captured=1.0, score=0.5, psnr=30.0, distance=0.1,
                       region_psnr=29.0, region_distance=0.2, box=(0, 0, 1, 1), anomalous=False,
                       in_alert=False)  # fmt: skip


def test_scores_cross_the_bus_and_stale_epochs_do_not(redis_server: parts.Redis) -> None:
    from service.cluster.bus import RedisPublisher, RedisSubscriber
    from service.core.messages import StreamScore

    got: list = []
    done = threading.Event()

    def deliver(messages) -> None:
        got.extend(messages)
        if len(got) >= 3:
            done.set()

    sub = RedisSubscriber(redis_server.url, deliver, channel="test:bus")
    sub.start()
    assert sub.subscribed.wait(10)
    new, old = RedisPublisher(redis_server.url, "b", "test:bus"), RedisPublisher(redis_server.url, "a", "test:bus")
    assert new.publish([("stream:cam", score("cam", 1)), ("stream:cam", score("cam", 2))], {"cam": 2}) == 2
    assert old.publish([("stream:cam", score("cam", 9))], {"cam": 1}) == 1  # a cut-off shard, resumed
    assert old.publish([("stream:gone", score("gone", 1))], {}) == 0  # a camera it no longer runs: not sent
    new.publish([("stream:cam", score("cam", 3))], {"cam": 2})
    assert done.wait(10), got
    sub.stop()
    assert [(t, type(m), m.frame) for t, m in got] == [("stream:cam", StreamScore, f) for f in (1, 2, 3)]
    assert sub.stale == 1


def test_a_delivery_that_raises_does_not_end_the_feed(redis_server: parts.Redis) -> None:
    from service.cluster.bus import RedisPublisher, RedisSubscriber

    got: list = []
    done = threading.Event()

    def deliver(messages) -> None:
        if not got and messages[0][1].frame == 1:
            got.append(None)
            raise RuntimeError("a bug in what the node does with a score")
        got.extend(m.frame for _, m in messages)
        done.set()

    sub = RedisSubscriber(redis_server.url, deliver, channel="test:raise")
    sub.start()
    assert sub.subscribed.wait(10)
    RedisPublisher(redis_server.url, "a", "test:raise").publish(
        [("stream:cam", score("cam", 1)), ("stream:cam", score("cam", 2))], {"cam": 1}
    )
    assert done.wait(10), got
    sub.stop()
    assert got == [None, 2] and sub.failed == 1


def test_redis_bus_is_the_bus_interface() -> None:
    import inspect

    from service.cluster.bus import RedisBus
    from service.core.bus import Bus

    for name, member in vars(Bus).items():
        if callable(member) and not name.startswith("_"):
            assert str(inspect.signature(getattr(RedisBus, name))) == str(inspect.signature(member)), name
