from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Response

from service.routers.deps import ready_runtime, runtime
from service.runtime import Runtime
from service.schemas import StreamCreate, StreamCreated, StreamOut

router = APIRouter(prefix="/api/streams", tags=["streams"])


@router.post("", response_model=StreamCreated, status_code=201)
def create_stream(body: StreamCreate, rt: Runtime = Depends(ready_runtime)) -> dict:
    try:
        model = rt.host.get(body.model)
    except KeyError as e:
        raise HTTPException(422, str(e.args[0])) from None
    try:
        stream = rt.streams.start(body.url, body.name, model, body.fps_cap, body.alert_overrides())
    except OverflowError as e:
        raise HTTPException(409, str(e)) from None
    except ValueError as e:  # e.g. inconsistent thresholds with the calibration defaults
        raise HTTPException(422, str(e)) from None
    return {"id": stream.id}


@router.get("", response_model=list[StreamOut])
def list_streams(rt: Runtime = Depends(runtime)) -> list[dict]:
    return [s.describe() for s in list(rt.streams.streams.values())]


@router.get("/{stream_id}", response_model=StreamOut)
def get_stream(stream_id: str, rt: Runtime = Depends(runtime)) -> dict:
    stream = rt.streams.streams.get(stream_id)
    if stream is None:
        raise HTTPException(404, f"no stream {stream_id!r}")
    return stream.describe()


@router.delete("/{stream_id}", status_code=204)
def delete_stream(stream_id: str, rt: Runtime = Depends(runtime)) -> Response:
    try:
        rt.streams.delete(stream_id)
    except KeyError:
        raise HTTPException(404, f"no stream {stream_id!r}") from None
    return Response(status_code=204)
