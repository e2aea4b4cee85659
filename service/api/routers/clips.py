"""Uploads are parsed as they arrive and written straight to disk: the size limit is enforced
while receiving, so an oversized upload is refused without ever being held in memory."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from python_multipart.multipart import MultipartParser, parse_options_header

from model.data import VIDEO_SUFFIXES
from service.alerts import heatmap
from service.api.deps import ClipsDep, HostDep, MetricsDep, SettingsDep, StoreDep, StreamsDep
from service.api.errors import responses
from service.api.params import Overlay, Width
from service.api.schemas import ClipCreated, ClipItem, ClipOut
from service.capture.video import probe
from service.core.exceptions import NotAVideo, UnreadableVideo
from service.core.settings import Settings
from service.pipeline.clips import ClipManager
from service.pipeline.streams import alert_policy

router = APIRouter(prefix="/api/clips", tags=["clips"])


class TooLarge(Exception):
    pass


class NoRoom(Exception):
    """The upload quota or the free-space floor would be crossed (507)."""


class NameTooLong(Exception):
    pass


def stored_suffix(filename: str | None) -> str:
    """The stored file's suffix: the upload's own when it is a known video suffix (FFmpeg may need it to pick
    a demuxer), else '.video'. Nothing else of the caller's name reaches the file system."""
    try:
        suffix = Path(filename or "").suffix.lower()
    except ValueError:  # e.g. a NUL byte
        return ".video"
    return suffix if suffix in VIDEO_SUFFIXES else ".video"


class FilePart:
    """Collects the first multipart part that carries a filename into `path`. `room()` says how many more
    bytes the disk budget allows (quota and free-space floor, shared with concurrent uploads)."""

    def __init__(self, path: Path, limit: int, room=None, max_name: int = 255, on_bytes=None) -> None:
        self.path, self.limit = path, limit
        self.room = room or (lambda: limit)
        self.max_name = max_name
        self.on_bytes = on_bytes or (lambda n: None)
        self.size = 0
        self.filename: str | None = None
        self.found = False
        self._file = None
        self._field, self._value, self._headers = b"", b"", {}
        self._current = False

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin, "on_header_field": self._hfield, "on_header_value": self._hvalue,
            "on_header_end": self._hend, "on_headers_finished": self._hdone, "on_part_data": self._data,
            "on_part_end": self._end,
        }  # fmt: skip

    def _begin(self) -> None:
        self._headers, self._current = {}, False

    def _hfield(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _hvalue(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _hend(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _hdone(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        filename = params.get(b"filename")
        if filename is not None and not self.found:
            self.found, self._current = True, True
            self.filename = filename.decode(errors="replace")
            if len(self.filename) > self.max_name:
                raise NameTooLong
            self._file = open(self.path, "wb")  # noqa: SIM115 -- closed in _end/close

    def _data(self, data: bytes, start: int, end: int) -> None:
        if not self._current:
            return
        n = end - start
        self.size += n
        if self.size > self.limit:
            raise TooLarge
        if n > self.room():
            raise NoRoom
        self.on_bytes(n)
        self._file.write(data[start:end])

    def _end(self) -> None:
        if self._current:
            self._current = False
            self._file.close()

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()


@router.get("", response_model=list[ClipItem])
def list_clips(store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict]:
    """Uploads, newest first (kept for clip_retention_s)."""
    return store.clips(limit)


def _room(s: Settings, clips: ClipManager, used: int) -> int:
    """Bytes an upload may still write: under the quota (`used` at its start plus what every upload in flight
    wrote since) and above the free-space floor."""
    return min(s.upload_quota_bytes - used - clips.receiving_bytes, clips.free_bytes() - s.min_free_bytes)


def _no_room_message(s: Settings) -> str:
    return (f"no room for this upload: stored uploads are limited to {s.upload_quota_bytes} bytes"
            f" (upload_quota_bytes) and {s.min_free_bytes} bytes of disk stay free (min_free_bytes);"
            " delete clips or wait for retention")  # fmt: skip


@router.post("", response_model=ClipCreated, status_code=202, responses=responses(413, 415, 429, 507))
async def upload_clip(
    request: Request,
    host: HostDep,
    settings: SettingsDep,
    clips: ClipsDep,
    metrics: MetricsDep,
    streams: StreamsDep,
    model: Annotated[str | None, Query()] = None,
    stream: Annotated[
        str | None,
        Query(description="Score it as this stream would: the stream's model, calibration, alert thresholds and mask"),
    ] = None,
) -> dict:
    limit = settings.max_upload_bytes
    rejected = metrics.upload_rejected
    scoring = None
    if stream is not None:  # before the body: an unknown stream is a 404 at once (a thread: a cluster reads its store)
        scoring = await asyncio.to_thread(lambda: streams.get(stream).scoring())
    if scoring is not None and model is not None and model != scoring.model.name:
        raise HTTPException(422, f"stream {stream!r} scores with model {scoring.model.name!r}, not {model!r}")
    hosted = scoring.model if scoring is not None else host.get(model)
    policy = scoring.policy if scoring is not None else alert_policy(settings, hosted)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit + 64 * 1024:
        rejected.labels("too_large").inc()
        raise HTTPException(413, f"upload of {int(length)} bytes exceeds the limit of {limit} bytes (max_upload_bytes)")
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        rejected.labels("not_multipart").inc()
        raise HTTPException(415, "expected multipart/form-data with the video in a file field named 'file'")
    if clips.receiving >= settings.max_concurrent_uploads:
        rejected.labels("busy").inc()
        raise HTTPException(429, f"{clips.receiving} uploads are being received already (max_concurrent_uploads);"
                            " retry when one is done", headers={"Retry-After": "5"})  # fmt: skip
    used = await asyncio.to_thread(clips.usage)
    room = _room(settings, clips, used)
    if (length is not None and length.isdigit() and int(length) > room) or room <= 0:
        rejected.labels("no_room").inc()
        raise HTTPException(507, _no_room_message(settings))
    clip_id, path = clips.new_path(".upload")
    with clips.receiving_upload() as wrote:
        part = FilePart(path, limit, lambda: _room(settings, clips, used), settings.max_upload_name, wrote)
        parser = MultipartParser(params[b"boundary"], part.callbacks())
        try:
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
        except Exception as e:  # TooLarge, NoRoom, NameTooLong, or the parser's
            part.close()
            path.unlink(missing_ok=True)
            if isinstance(e, TooLarge):
                rejected.labels("too_large").inc()
                raise HTTPException(413, f"upload exceeds the limit of {limit} bytes (max_upload_bytes)") from None
            if isinstance(e, NoRoom):
                rejected.labels("no_room").inc()
                raise HTTPException(507, _no_room_message(settings)) from None
            if isinstance(e, NameTooLong):
                rejected.labels("name_too_long").inc()
                raise HTTPException(
                    422, f"file name longer than {part.max_name} characters (max_upload_name)"
                ) from None
            rejected.labels("malformed").inc()
            raise HTTPException(422, f"malformed multipart body: {e}") from None
    part.close()
    if not part.found or part.size == 0:
        path.unlink(missing_ok=True)
        rejected.labels("no_file").inc()
        raise HTTPException(422, "no video in the upload: send it as a non-empty multipart file field")
    final = path.with_suffix(stored_suffix(part.filename))  # generated name, known suffix
    path.rename(final)
    try:
        fps, count = await asyncio.to_thread(probe, final, hosted.config.window)
    except UnreadableVideo as e:
        final.unlink(missing_ok=True)
        rejected.labels("not_video" if isinstance(e, NotAVideo) else "corrupt").inc()
        raise type(e)(f"{part.filename}: {e}") from None
    job = clips.submit(clip_id, final, part.filename, part.size, hosted, policy, fps, count, scoring)
    return {"id": job.id, "status": job.status}


@router.get("/{clip_id}", response_model=ClipOut, response_model_exclude_none=False)
def get_clip(
    clip_id: str,
    clips: ClipsDep,
    format: Annotated[str, Query(pattern="^(json|csv)$", description="csv: per-frame scores only")] = "json",
    scores: Annotated[bool, Query(description="Include per-frame scores")] = True,
):
    result = clips.result(clip_id, scores=scores or format == "csv")  # a failed clip says so, not 404
    if format == "csv":
        rows = result.get("scores", [])
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["frame", "score", "psnr", "distance", "anomalous"])
        for r in rows:
            writer.writerow([r["frame"], f"{r['score']:.6f}", f"{r['psnr']:.6f}", f"{r['distance']:.8f}",
                             int(r["anomalous"])])  # fmt: skip
        return Response(out.getvalue(), media_type="text/csv")
    if not scores:
        result.pop("scores", None)
    return result


@router.get("/{clip_id}/frames/{frame}.jpg", responses={200: {"content": {"image/jpeg": {}}}})
def clip_frame(clip_id: str, frame: int, clips: ClipsDep, overlay: Overlay = False, width: Width = 640) -> Response:
    """A scored frame of an upload (decoded again from the stored video) as JPEG."""
    picture, error = clips.scored_frame(clip_id, frame)
    image = heatmap.render(picture, error, width, overlay)
    return Response(heatmap.jpeg(image), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{clip_id}/frames/{frame}/heatmap.png", responses={200: {"content": {"image/png": {}}}})
def clip_heatmap(clip_id: str, frame: int, clips: ClipsDep, width: Width = 640) -> Response:
    """Where that frame was anomalous: the stored error map, colour-mapped RGBA PNG, the frame's size."""
    picture, error = clips.scored_frame(clip_id, frame)
    if error is None:
        raise HTTPException(404, f"no error map stored for frame {frame}")
    data = heatmap.render_heatmap(picture, error, width)
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
