"""The ASGI layer around the API: a request id and one log line per request, and bounded request bodies.

It wraps the whole FastAPI app, so that an oversized body is refused (413) before any handler reads it, and a streamed
response is logged when its last byte has gone, with its real duration.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Awaitable, Callable, Dict, List, MutableMapping

from tts.serve.config import ApiError, ServeConfig

log = logging.getLogger("tts.serve")

Message = MutableMapping[str, object]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
JSON_BODY_BYTES = 64 * 1024  # far above any valid speech request (--max-chars raises it)
FORM_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries and the text fields of a voice upload


class ServeMiddleware:
    """Args:
        app: the FastAPI app. config: the limits (``max_chars``, ``max_upload_bytes``).
    """

    def __init__(self, app, config: ServeConfig):
        self.app = app
        self.config = config

    def limit(self, scope: Message) -> int:
        """The largest body a request to this path may send, in bytes."""
        if scope["path"] == "/v1/voices":
            return self.config.max_upload_bytes + FORM_OVERHEAD_BYTES
        return max(JSON_BODY_BYTES, 8 * self.config.max_chars)  # 6 bytes per \\uXXXX character, and the JSON around

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # the lifespan events
            return
        request_id = secrets.token_hex(4)
        state: Dict[str, object] = scope.setdefault("state", {})  # type: ignore[assignment]
        state["request_id"] = request_id
        start = time.monotonic()
        status: List[int] = []
        logged: List[bool] = []

        def finish(outcome: str) -> None:
            if not logged:
                logged.append(True)
                code = status[0] if status else 0
                log.info("request %s %s %s -> %s in %.3f s: %s", request_id, scope["method"], scope["path"], code,
                         time.monotonic() - start, state.get("outcome", outcome) if code >= 400 else outcome)

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))  # type: ignore[arg-type]
                message["headers"] = list(message.get("headers", [])) + [(b"x-request-id", request_id.encode())]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finish("ok")

        try:
            body = await self._read_body(scope, receive)
        except ApiError as err:
            state["outcome"] = err.message
            await _send_error(send_logged, err)
            finish("refused")
            return
        try:
            await self.app(scope, _replay(body, receive), send_logged)
        except Exception:
            finish("failed")
            raise
        finally:
            finish("client went away before the response ended")

    async def _read_body(self, scope: Message, receive: Receive) -> bytes:
        """The whole request body, refused with 413 as soon as it is known to pass ``limit`` (from Content-Length, or
        while reading a chunked one)."""
        limit = self.limit(scope)
        headers = dict(scope.get("headers", []))  # type: ignore[arg-type]
        what = "upload" if scope["path"] == "/v1/voices" else "request body"
        too_large = ApiError(413, f"the {what} is larger than this server accepts ({limit // 1024} KiB)")
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise too_large
        parts: List[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)  # type: ignore[arg-type]
            if size > limit:
                raise too_large
            parts.append(chunk)  # type: ignore[arg-type]
            if not message.get("more_body", False):
                break
        return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body already read, then waits on the real one (for a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _send_error(send: Send, err: ApiError) -> None:
    data = json.dumps(err.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
               (b"connection", b"close")]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
