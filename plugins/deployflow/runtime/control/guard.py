"""The control plane's door: the admin token and a body-size cap, checked before a body byte is read.

FastAPI resolves dependencies after it has parsed body parameters, so a token check written as a
dependency would let an unauthenticated client make the runtime read (and hold) any body. This is
pure ASGI in front of the app: it answers 401 from the headers alone, 413 from a Content-Length
over the cap, and reads a streamed body only up to the cap before the app sees it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from deployflow.runtime.errors import PayloadTooLarge, RuntimeApiError, Unauthorized

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Routes anyone may call: liveness, and the API's own description (it holds no secret).
# /metrics: names and counts only, for a scraper that holds no token (see api.py)
PUBLIC_PATHS = frozenset({"/health", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


class ControlPlaneGuard:
    """ASGI middleware: ``Authorization: Bearer <admin token>`` on every route but the public ones,
    and at most ``max_body_bytes`` of body on every route."""

    def __init__(self, app: ASGIApp, *, token: str, max_body_bytes: int) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if scope["path"] not in PUBLIC_PATHS:
            authorization = headers.get(b"authorization")
            if authorization is None or not hmac.compare_digest(authorization, self.expected):
                await _answer(send, Unauthorized("send the runtime's admin token as 'Authorization: Bearer <token>'"))
                return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await _answer(send, self._too_large(length.decode(errors="replace")))
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await _answer(send, self._too_large(f"more than {self.max_body_bytes}"))
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    def _too_large(self, size: str) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body of {size} bytes; the control plane takes at most {self.max_body_bytes}")


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, as one message; then the connection's own messages (a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def _answer(send: Send, error: RuntimeApiError) -> None:
    """The API's error shape, ``{"error": {"code", "message"}}``, and the connection closed after it."""
    payload = json.dumps({"error": {"code": error.code, "message": str(error)}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
               (b"connection", b"close")]  # fmt: skip
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
