"""Optional bearer token: when the setting is empty, everything is open (loopback by default).

Browsers cannot set headers on a WebSocket, so the socket endpoints also take the token as a
subprotocol: offer ``mnad.bearer`` plus ``mnad.token.<base64url(token), no padding>``; the
server answers with ``mnad.bearer``, never echoing the token. (Not a query parameter: URLs end
up in access logs.)
"""

from __future__ import annotations

import base64
import binascii
import hmac

from fastapi import HTTPException, Request, WebSocket, status

from service.api import deps
from service.api.deps import MetricsDep, SettingsDep

WS_PROTOCOL = "mnad.bearer"
WS_TOKEN_PREFIX = "mnad.token."


def bearer(header: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer <token>` header; the scheme is case-insensitive (RFC 9110)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_ok(expected: str | None, header: str | None) -> bool:
    if expected is None:
        return True
    token = bearer(header)
    if token is None:
        return False
    return hmac.compare_digest(token.encode(errors="surrogateescape"), expected.encode(errors="surrogateescape"))


def _expected(settings) -> str | None:
    return settings.api_token.get_secret_value() if settings.api_token is not None else None


def subprotocol_token(protocols: list[str]) -> str | None:
    """The token carried in a ``mnad.token.<base64url>`` subprotocol, if any (malformed: None)."""
    for p in protocols:
        if p.startswith(WS_TOKEN_PREFIX):
            b64 = p[len(WS_TOKEN_PREFIX) :]
            try:
                return base64.b64decode(b64 + "=" * (-len(b64) % 4), altchars=b"-_", validate=True).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return None
    return None


def accepted_subprotocol(websocket: WebSocket) -> str | None:
    """What to answer the handshake with: a browser that offered subprotocols fails without one."""
    return WS_PROTOCOL if WS_PROTOCOL in websocket.scope.get("subprotocols", []) else None


def origin_ok(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """Browsers send Origin on cross-origin writes and on every WebSocket handshake; a page of another site
    may still send a 'simple' POST (a form, a multipart upload) without a preflight, and open any WebSocket.
    No Origin (curl, scripts): not a browser page, allowed. Same host (and port) as the request: allowed.
    'null' (sandboxed pages, file://) and anything else: only if listed in allowed_origins."""
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    if origin in (o.strip().rstrip("/").lower() for o in allowed):
        return True
    scheme, sep, netloc = origin.partition("://")
    if not sep or scheme not in ("http", "https") or not host:
        return False
    default = {"http": ":80", "https": ":443"}[scheme]
    return netloc.removesuffix(default) == host.strip().lower().removesuffix(":80").removesuffix(":443")


UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def require_origin(request: Request, settings: SettingsDep, metrics: MetricsDep) -> None:
    """State-changing requests from a web page of another origin are refused, token or not."""
    if request.method not in UNSAFE_METHODS:
        return
    if not origin_ok(request.headers.get("origin"), request.headers.get("host"), settings.allowed_origins):
        metrics.refused.labels("origin").inc()
        raise HTTPException(status.HTTP_403_FORBIDDEN, ORIGIN_REFUSED)


ORIGIN_REFUSED = "cross-origin request refused: the Origin is neither this service nor in allowed_origins"


async def require_token(request: Request, settings: SettingsDep, metrics: MetricsDep) -> None:
    if not token_ok(_expected(settings), request.headers.get("authorization")):
        metrics.refused.labels("auth").inc()
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


async def websocket_allowed(websocket: WebSocket) -> bool:
    """Checked before accepting: a refused handshake never sees a message (the client gets HTTP 403)."""
    settings, metrics = await deps.settings(websocket), await deps.metrics(websocket)
    if not origin_ok(websocket.headers.get("origin"), websocket.headers.get("host"), settings.allowed_origins):
        metrics.refused.labels("origin").inc()
        await websocket.close(code=1008, reason="cross-origin WebSocket refused")
        return False
    header = websocket.headers.get("authorization")
    if header is None and (token := subprotocol_token(websocket.scope.get("subprotocols", []))) is not None:
        header = f"Bearer {token}"
    if token_ok(_expected(settings), header):
        return True
    metrics.refused.labels("auth").inc()
    await websocket.close(code=1008, reason="missing or wrong bearer token")
    return False
