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

WS_PROTOCOL = "mnad.bearer"
WS_TOKEN_PREFIX = "mnad.token."


def token_ok(expected: str | None, header: str | None) -> bool:
    if expected is None:
        return True
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), expected.encode())


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


async def require_token(request: Request) -> None:
    if not token_ok(_expected(request.app.state.runtime.settings), request.headers.get("authorization")):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


async def websocket_allowed(websocket: WebSocket) -> bool:
    """Checked before accepting: a refused handshake never sees a message."""
    expected = _expected(websocket.app.state.runtime.settings)
    header = websocket.headers.get("authorization")
    if header is None and (token := subprotocol_token(websocket.scope.get("subprotocols", []))) is not None:
        header = f"Bearer {token}"
    if token_ok(expected, header):
        return True
    await websocket.close(code=1008, reason="missing or wrong bearer token")
    return False
