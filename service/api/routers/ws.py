"""WebSockets: per-stream score feeds, an all-streams alert channel, and upload progress."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from service.alerts.episodes import ALERTS_TOPIC
from service.api.auth import accepted_subprotocol, websocket_allowed
from service.api.deps import BusDep, ClipsDep, MetricsDep, StreamsDep
from service.core.bus import Bus, Subscriber
from service.core.exceptions import ClipNotFound, StreamNotFound
from service.core.messages import ClipDone, ClipScoreMessage, Message, StreamScore
from service.core.metrics import Metrics
from service.pipeline.clips import clip_topic
from service.pipeline.streams import stream_topic

router = APIRouter(tags=["websocket"])


async def _pump(
    websocket: WebSocket, bus: Bus, metrics: Metrics, sub: Subscriber, stop_on_done: bool = False,
    skip: Callable[[Message], bool] | None = None,
) -> None:  # fmt: skip
    """Send the subscriber's queue until the client goes (but messages `skip` names); only this client waits on
    its socket."""
    metrics.ws_clients.inc()

    async def drain_client() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()

    reader = asyncio.create_task(drain_client())
    try:
        while not reader.done():
            getter = asyncio.ensure_future(bus.next(sub))
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            for text, message in getter.result():
                if skip is not None and skip(message):
                    continue
                await websocket.send_text(text)
                if isinstance(message, StreamScore):
                    metrics.end_to_end_seconds.observe(max(0.0, time.time() - message.captured))
                if stop_on_done and isinstance(message, ClipDone):
                    return
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        reader.cancel()
        bus.unsubscribe(sub)
        metrics.ws_clients.dec()
        with contextlib.suppress(Exception):
            await websocket.close()


NOT_FOUND = 4404  # close code: 4000-4999 are the application's; 4404 mirrors HTTP 404


async def _not_found(websocket: WebSocket, reason: str) -> None:
    """Accept, then close with 4404: refusing the handshake instead would reach the client as HTTP 403,
    which reads as an authentication failure."""
    await websocket.accept(subprotocol=accepted_subprotocol(websocket))
    await websocket.close(code=NOT_FOUND, reason=reason[:120])


@router.websocket("/ws/streams/{stream_id}")
async def stream_feed(
    websocket: WebSocket, stream_id: str, streams: StreamsDep, bus: BusDep, metrics: MetricsDep
) -> None:
    if not await websocket_allowed(websocket):
        return
    try:
        streams.get(stream_id)
    except StreamNotFound as e:
        await _not_found(websocket, str(e))
        return
    await websocket.accept(subprotocol=accepted_subprotocol(websocket))
    await _pump(websocket, bus, metrics, bus.subscribe(stream_topic(stream_id)))


@router.websocket("/ws/alerts")
async def alert_feed(websocket: WebSocket, bus: BusDep, metrics: MetricsDep) -> None:
    if not await websocket_allowed(websocket):
        return
    await websocket.accept(subprotocol=accepted_subprotocol(websocket))
    await _pump(websocket, bus, metrics, bus.subscribe(ALERTS_TOPIC))


@router.websocket("/ws/clips/{clip_id}")
async def clip_feed(websocket: WebSocket, clip_id: str, clips: ClipsDep, bus: BusDep, metrics: MetricsDep) -> None:
    """Scores so far, then live ones as they come, then a final 'done' message."""
    if not await websocket_allowed(websocket):
        return
    job = clips.get(clip_id)
    if job is None:  # finished before a restart, or interrupted by one: its stored state, then close
        final = clips.stored(clip_id)
        if final is None:
            await _not_found(websocket, str(ClipNotFound(clip_id)))
            return
        await websocket.accept(subprotocol=accepted_subprotocol(websocket))
        for score in final.pop("scores", None) or []:
            await _send(websocket, ClipScoreMessage(clip=clip_id, **score))
        await _send(websocket, ClipDone(clip=clip_id, **final))
        await websocket.close()
        return
    await websocket.accept(subprotocol=accepted_subprotocol(websocket))
    sub = bus.subscribe(clip_topic(clip_id))  # subscribe before the snapshot: nothing falls in between
    backlog = list(job.scores)
    for row in backlog:
        await _send(websocket, ClipScoreMessage(clip=clip_id, **row))  # no progress: a backlog row has none
    if job.finished.is_set():
        await _send(websocket, ClipDone(clip=clip_id, **job.describe(scores=False)))
        bus.unsubscribe(sub)
        await websocket.close()
        return
    last = backlog[-1]["frame"] if backlog else -1

    def sent(m: Message) -> bool:  # in the backlog already: a score is stored before the engine publishes it,
        return isinstance(m, ClipScoreMessage) and m.frame <= last  # so it may reach the queue after the snapshot

    bus.discard(sub, sent)  # what is queued already; later ones are skipped as they come
    await _pump(websocket, bus, metrics, sub, stop_on_done=True, skip=sent)


async def _send(websocket: WebSocket, message: Message) -> None:
    await websocket.send_text(message.wire())
