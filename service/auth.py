"""Optional bearer token: when the setting is empty, everything is open (loopback by default)."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, WebSocket, status


def token_ok(expected: str | None, header: str | None) -> bool:
    if expected is None:
        return True
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), expected.encode())


def _expected(settings) -> str | None:
    return settings.api_token.get_secret_value() if settings.api_token is not None else None


async def require_token(request: Request) -> None:
    if not token_ok(_expected(request.app.state.runtime.settings), request.headers.get("authorization")):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


async def websocket_allowed(websocket: WebSocket) -> bool:
    """Checked before accepting: a refused handshake never sees a message."""
    if token_ok(_expected(websocket.app.state.runtime.settings), websocket.headers.get("authorization")):
        return True
    await websocket.close(code=1008, reason="missing or wrong bearer token")
    return False
