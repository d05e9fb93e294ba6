"""Hot reads answered from the replica's memory, in front of the FastAPI routes (an ASGI middleware).

A hot-read ``GET`` (see :mod:`serve.hot_cache`) whose answer is cached is checked for its key and
rate limit exactly as the route would (the same ``principal`` function, with its in-memory key
cache and local token buckets) and answered with the stored bytes: ``304`` when ``If-None-Match``
names the ETag, gzip when the client accepts it. Everything else, and every miss, goes to the
routes unchanged; a miss's ``200`` answer is kept for the next request, and concurrent misses of
one answer wait for the first instead of all querying storage.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from serve.hot_cache import GZIP_MIN_BYTES, Entry, ResponseCache, etag_matches, scopes_of

log = logging.getLogger(__name__)

JSON = b"application/json"


def _headers(scope: dict) -> dict[bytes, bytes]:
    # the first of repeated headers, as Starlette's Headers.get does
    out: dict[bytes, bytes] = {}
    for k, v in scope.get("headers") or ():
        out.setdefault(k.lower(), v)
    return out


def cache_key(path: str, query_string: bytes) -> tuple[str, str | None]:
    """The cache key of a request (the path and its query in a canonical order) and its ``market`` parameter."""
    pairs = parse_qsl(query_string.decode("utf-8", "replace"), keep_blank_values=True)
    market = None
    for k, v in pairs:
        if k == "market":
            market = v  # the last one, as FastAPI takes it
    pairs.sort(key=lambda kv: kv[0])  # stable: repeated parameters keep their order
    return (f"{path}?{urlencode(pairs)}" if pairs else path), market


def _accepts_gzip(headers: dict[bytes, bytes]) -> bool:
    value = headers.get(b"accept-encoding", b"").lower()
    for part in value.split(b","):
        name, _, params = part.strip().partition(b";")
        if name.strip() == b"gzip":
            return params.replace(b" ", b"") not in (b"q=0", b"q=0.0", b"q=0.00", b"q=0.000")
    return False


async def send_entry(send, entry: Entry, headers: dict[bytes, bytes]) -> None:
    """Answer with a cached entry: 304 for a matching If-None-Match, else 200, gzipped when accepted."""
    common = [(b"etag", entry.etag.encode()), (b"vary", b"accept-encoding"),
              (b"cache-control", b"private, no-cache")]
    inm = headers.get(b"if-none-match")
    if inm is not None and etag_matches(inm.decode("latin-1"), entry.etag):
        await send({"type": "http.response.start", "status": 304, "headers": common})
        await send({"type": "http.response.body", "body": b""})
        return
    body = entry.body
    out = [(b"content-type", entry.content_type), *common]
    if len(body) >= GZIP_MIN_BYTES and _accepts_gzip(headers):
        body = entry.gzipped()
        out.append((b"content-encoding", b"gzip"))
    out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": out})
    await send({"type": "http.response.body", "body": body})


class HotReads:
    """ASGI middleware; ``services(app)`` gives the replica's Services (``.hot`` is its ResponseCache) and
    ``authorize(svc, authorization, x_api_key)`` the route's principal check (raises ApiError)."""

    def __init__(self, app, services: Callable[[Any], Awaitable[Any]],
                 authorize: Callable[..., Awaitable[Any]], error: Callable[[Exception], Any]) -> None:
        self.app = app
        self._services, self._authorize, self._error = services, authorize, error

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        key, market = cache_key(path, scope.get("query_string") or b"")
        scopes = scopes_of(path, market)
        if scopes is None:
            await self.app(scope, receive, send)
            return
        svc = await self._services(scope.get("app"))
        cache: ResponseCache | None = getattr(svc, "hot", None)
        if cache is None or not cache.live:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        entry = cache.get(key)
        if entry is None:
            flight = cache.flight(key)
            if flight is None:
                await self._compute(cache, key, scopes, scope, receive, send, headers)
                return
            if not await self._authorized(svc, headers, scope, receive, send):
                return
            entry = await flight
            if entry is None:  # the first request did not get a 200: answer this one on its own
                await self.app(scope, receive, send)
                return
            await send_entry(send, entry, headers)
            return
        if await self._authorized(svc, headers, scope, receive, send):
            await send_entry(send, entry, headers)

    async def _authorized(self, svc, headers, scope, receive, send) -> bool:
        auth = headers.get(b"authorization")
        api_key = headers.get(b"x-api-key")
        try:
            await self._authorize(svc, auth.decode("latin-1") if auth else None,
                                  api_key.decode("latin-1") if api_key else None)
        except Exception as e:  # the route's own errors (ApiError) become its answers
            response = self._error(e)
            if response is None:
                raise
            await response(scope, receive, send)
            return False
        return True

    async def _compute(self, cache: ResponseCache, key: str, scopes, scope, receive, send, headers) -> None:
        """Run the route; keep and send its 200 answer through the cache's path, pass anything else on."""
        started = cache.now()
        cache.begin(key)
        entry: Entry | None = None
        try:
            start: dict | None = None
            chunks: list[bytes] = []

            async def capture(message) -> None:
                nonlocal start
                if message["type"] == "http.response.start":
                    start = message
                elif message["type"] == "http.response.body":
                    chunks.append(message.get("body", b""))
            await self.app(scope, receive, capture)
            if start is None:
                return
            content_type = dict(start.get("headers") or ()).get(b"content-type", b"")
            if start["status"] == 200 and content_type.startswith(JSON):
                entry = cache.put(key, b"".join(chunks), content_type, scopes, started)
                await send_entry(send, entry, headers)
                return
            await send(start)
            await send({"type": "http.response.body", "body": b"".join(chunks)})
        finally:
            cache.end(key, entry)
