"""Protections of the web app: request-size limits, security headers, rate limiting, and
one reply at a time per conversation."""

from __future__ import annotations

import logging
import threading
import time

from whetstone.asgi import ASGIApp, BodyLimit, Message, Receive, Scope, Send, Tracked

__all__ = [
    "CSP",
    "HEADERS",
    "BodyLimit",
    "CatchAll",
    "InFlight",
    "OriginCheck",
    "RateLimiter",
    "SecurityHeaders",
]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""Only the app's own scripts run: an injected inline script or event handler is refused."""

HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Add the content security policy and related headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in HEADERS if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


class OriginCheck:
    """Refuse (403) a state-changing request whose Origin header names another site than this
    server (its Host, or the configured public URL); requests without Origin pass, the CSRF
    token and SameSite cookies still guard them."""

    def __init__(self, app: ASGIApp, public_url: str | None = None) -> None:
        self.app = app
        self.public = _origin_of(public_url) if public_url else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") not in ("GET", "HEAD", "OPTIONS"):
            headers = dict(scope.get("headers") or [])
            origin = headers.get(b"origin", b"").decode("latin-1").rstrip("/").lower()
            own = f"{scope.get('scheme', 'http')}://{headers.get(b'host', b'').decode('latin-1')}"
            if origin and origin != "null" and origin not in (own.lower(), self.public):
                body = b"This request came from another site."
                head = [(b"content-type", b"text/plain; charset=utf-8")]
                await send({"type": "http.response.start", "status": 403, "headers": head})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, lower-cased."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class CatchAll:
    """Answer an unexpected error with a clear 500 (JSON for JSON clients, else a short page)
    inside the other protections, instead of the server's plain-text 500; the error is logged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = Tracked(send)
        try:
            await self.app(scope, receive, tracked)
        except Exception:
            logging.getLogger("whetstone.feedback").exception("unexpected error")
            if tracked.started:  # a stream under way: nothing more can be said
                return
            wants_json = b"application/json" in dict(scope.get("headers") or []).get(
                b"accept", b""
            ) or str(scope.get("path", "")).endswith(("/send", ".json"))
            if wants_json:
                body, kind = b'{"error": "something went wrong on the server"}', b"application/json"
            else:
                body = b"<!doctype html><title>Error</title><p>Something went wrong on the server."
                kind = b"text/html; charset=utf-8"
            headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 500, "headers": headers})
            await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """Token buckets per key: ``burst`` requests at once, refilled at ``per_minute``."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def has_room(self, key: str) -> bool:
        """Whether the key's bucket holds a token (none is taken)."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            return min(self.burst, tokens + (now - last) * self.rate) >= 1.0

    def allow(self, key: str) -> bool:
        """Take one token from the key's bucket; False when it is empty."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > 100_000:  # forget idle keys; their buckets were full anyway
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 600}
            return True


class InFlight:
    """Keys with work under way (a conversation whose reply is streaming): claimed by one
    request at a time, and freed by it or, should a request vanish, after ``ttl_s``."""

    def __init__(self, ttl_s: float = 600.0) -> None:
        self.ttl_s = ttl_s
        self._since: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, key: str) -> bool:
        """True when ``key`` was free and is now held by the caller."""
        now = time.monotonic()
        with self._lock:
            if now - self._since.get(key, -self.ttl_s) < self.ttl_s:
                return False
            self._since[key] = now
            return True

    def release(self, key: str) -> None:
        """Free ``key``."""
        with self._lock:
            self._since.pop(key, None)
