"""Plain ASGI pieces shared by the two servers (the feedback studio and `whetstone serve`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Refusal = Callable[[int], tuple[bytes, bytes]]
"""The content type and body of a 413 answer, given the limit."""


class Tracked:
    """A send that remembers whether the response has started (after which no other answer
    can be given)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


class TooLarge(Exception):
    """A request body over the limit."""


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes (``upload_limit`` on upload paths) with 413.

    Checks Content-Length first, then counts the bytes actually received (chunked uploads).
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        upload_limit: int | None = None,
        upload_paths: tuple[str, ...] = (),
        refusal: Refusal | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = limit if upload_limit is None else upload_limit
        self.upload_paths = upload_paths
        self.refusal = refusal or plain_refusal
        self.headers = list(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = self.upload_limit if path in self.upload_paths else self.limit
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._refuse(send, limit)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise TooLarge
            return message

        tracked = Tracked(send)
        try:
            await self.app(scope, counted, tracked)
        except TooLarge:
            if not tracked.started:
                await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int) -> None:
        kind, body = self.refusal(limit)
        headers = [(b"content-type", kind), *self.headers]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def plain_refusal(limit: int) -> tuple[bytes, bytes]:
    """A plain-text 413 body."""
    return b"text/plain; charset=utf-8", f"request body too large (limit {limit} bytes)\n".encode()
