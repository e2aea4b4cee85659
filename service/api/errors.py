"""The error body every route answers with, and the documented error statuses (OpenAPI), in one place:
what schemathesis checks each response against."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from service.core.exceptions import Conflict, DomainError, Invalid, NotAVideo, NotFound


class ErrorOut(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="What is wrong: a sentence, or FastAPI's list of field errors for a malformed request"
    )


WHY = {
    400: "the body is not valid JSON",
    401: "missing or wrong bearer token (MNAD_API_TOKEN)",
    403: "cross-origin request refused (Origin neither this service nor in allowed_origins)",
    404: "no such stream, alert, clip or frame",
    409: "conflict with the current state (stream limit reached, calibration already collecting)",
    413: "upload larger than max_upload_bytes",
    415: "not multipart/form-data, or not a video",
    422: "invalid request: a field, the source policy, a malformed or corrupt upload",
    429: "max_concurrent_uploads already being received; retry later",
    503: "models still loading, or failed to load",
    507: "upload_quota_bytes or min_free_bytes would be crossed",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all with the ErrorOut body."""
    return {code: {"model": ErrorOut, "description": WHY[code]} for code in codes}


STATUS: dict[type[DomainError], int] = {NotFound: 404, Conflict: 409, Invalid: 422, NotAVideo: 415}


def status_for(error: DomainError) -> int:
    """The HTTP status of a domain error: that of its nearest kind in STATUS (500 if none)."""
    for kind in type(error).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 500
