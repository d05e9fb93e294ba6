"""A small async JSON GET client for reference-data APIs: TTL cache, request spacing, 429 and 5xx retries.

One :class:`RefDataClient` talks to one source over one ``aiohttp.ClientSession``. Every request waits
its turn (``min_interval_s`` apart, the source's published rate limit), a 429 pushes the next turn back
by ``Retry-After`` for every caller of the client, and 5xx answers or connection errors are retried with
exponential backoff and jitter. Failures end in a :class:`RefDataError` subclass that says what happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlencode

import aiohttp
import orjson

from connectors.http import Answer, HttpClient, snippet
from schemas.errors import ConfigError, CryptoIntelError

log = logging.getLogger(__name__)

ParamValue = str | int | float | bool
CacheKey = tuple[str, tuple[tuple[str, str], ...]]


class RefDataError(CryptoIntelError, RuntimeError):
    """A reference-data request that failed for good; ``status`` is the last HTTP status (0 if none)."""

    def __init__(self, message: str, *, url: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class RateLimited(RefDataError):
    """The source kept answering 429, or asked for a longer wait than the client may sit out."""

    def __init__(self, message: str, *, url: str = "", status: int = 429,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message, url=url, status=status)
        self.retry_after_s = retry_after_s


class RefDataUnavailable(RefDataError):
    """5xx answers, timeouts or connection errors on every attempt."""


class RequestRejected(RefDataError):
    """A 4xx answer other than 429 (unknown route or id, bad API key); retrying would not help."""


class BadResponse(RefDataError):
    """A successful answer whose body is not the JSON expected (truncated, invalid, wrong shape)."""


@dataclass(frozen=True)
class ClientConfig:
    """Where one source lives and how politely to call it; the API key never shows in repr or logs."""

    base_url: str
    name: str = "refdata"
    api_key_header: str | None = None
    api_key: str | None = field(default=None, repr=False)
    cache_ttl_s: float = 30.0  # 0 turns the cache off
    cache_max_entries: int = 256
    min_interval_s: float = 0.0  # 60 / the source's requests per minute
    attempts: int = 4  # tries per request, 429s included
    backoff_s: float = 0.5  # first retry delay; doubles per attempt, with jitter
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 60.0  # a longer Retry-After raises RateLimited instead of blocking the caller
    timeout_s: float = 10.0
    user_agent: str = "crypto-intel-refdata/0.1"

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{self.name}: base_url must start with http:// or https://, got {self.base_url!r}")
        if bool(self.api_key_header) != bool(self.api_key):
            raise ConfigError(f"{self.name}: api_key_header and api_key go together (set both or neither)")
        if self.attempts < 1 or self.cache_max_entries < 1:
            raise ConfigError(f"{self.name}: attempts and cache_max_entries must be at least 1")
        if min(self.cache_ttl_s, self.min_interval_s, self.backoff_s, self.max_backoff_s,
               self.max_retry_after_s) < 0 or self.timeout_s <= 0:
            raise ConfigError(f"{self.name}: durations must be >= 0 (timeout_s > 0)")


def per_minute(requests: float) -> float:
    """The spacing in seconds that keeps a client under ``requests`` per minute."""
    return 60.0 / requests


def _param_text(value: ParamValue) -> str:
    # JSON APIs want lower-case booleans; yarl refuses bools outright
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class RefDataClient(HttpClient):
    """Cached, rate-limited JSON GETs against one source; counters in :attr:`stats`."""

    def __init__(self, config: ClientConfig, session: aiohttp.ClientSession | None = None, *,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        super().__init__(name=config.name, attempts=config.attempts, backoff_s=config.backoff_s,
                         max_backoff_s=config.max_backoff_s, timeout_s=config.timeout_s, session=session,
                         max_retry_after_s=config.max_retry_after_s)
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.now_ns = clock_ns  # fetch time of records without a source timestamp
        self._cache: OrderedDict[CacheKey, tuple[float, Any]] = OrderedDict()
        self._turn = asyncio.Lock()
        self._next_at = 0.0  # monotonic time the next request may start
        self.stats.update({"cache_hits": 0, "errors": 0, "rejected": 0, "not_found": 0})
        self.rejected_reasons: dict[str, int] = {}

    def reject(self, reason: str, detail: str = "") -> None:
        """Count one response row that was skipped, under a short reason such as ``missing:usd``."""
        self.stats["rejected"] += 1
        self.rejected_reasons[reason] = self.rejected_reasons.get(reason, 0) + 1
        log.debug("%s: skipped row (%s) %s", self.config.name, reason, detail)

    def not_found(self, n: int, what: str = "") -> None:
        """Count ids the caller asked for that the source did not return."""
        if n:
            self.stats["not_found"] += n
            log.debug("%s: %d not returned %s", self.config.name, n, what)

    def clear_cache(self) -> None:
        """Forget every cached response."""
        self._cache.clear()

    async def get_json(self, path: str, params: Mapping[str, ParamValue] | None = None, *,
                       use_cache: bool = True) -> Any:
        """Decoded JSON of ``GET {base_url}{path}?params``, from the cache while fresh.

        Cached values are shared between callers: treat them as read-only.
        """
        if not path.startswith("/"):
            path = "/" + path
        query = {k: _param_text(v) for k, v in (params or {}).items()}
        key: CacheKey = (path, tuple(sorted(query.items())))
        if use_cache and self.config.cache_ttl_s > 0:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > time.monotonic():
                self._cache.move_to_end(key)
                self.stats["cache_hits"] += 1
                return hit[1]
        value = await self._fetch(path, query)
        if self.config.cache_ttl_s > 0:
            self._cache[key] = (time.monotonic() + self.config.cache_ttl_s, value)
            self._cache.move_to_end(key)
            while len(self._cache) > self.config.cache_max_entries:
                self._cache.popitem(last=False)  # least recently used
        return value

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self.config.user_agent}
        if self.config.api_key_header and self.config.api_key:
            headers[self.config.api_key_header] = self.config.api_key
        return headers

    def defer(self, seconds: float) -> None:
        """Hold every caller of this client back for ``seconds`` (a 429 concerns the whole client)."""
        self._next_at = max(self._next_at, time.monotonic() + seconds)

    async def before_attempt(self) -> None:
        async with self._turn:
            # loop: a 429 seen by another caller may push the turn back while this one sleeps
            while (wait := self._next_at - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            self._next_at = time.monotonic() + self.config.min_interval_s

    async def pause(self, seconds: float, rate_limited: bool) -> None:
        if rate_limited:  # a 429 concerns every caller of this client: the next turn waits
            self.defer(seconds)
        else:
            await asyncio.sleep(seconds)

    def rejected(self, shown: str, url: str, answer: Answer) -> Exception:
        self.stats["errors"] += 1
        return RequestRejected(f"{shown}: rejected with HTTP {answer.status}: {snippet(answer.body)}",
                               url=url, status=answer.status)

    def rate_limited(self, shown: str, url: str, answer: Answer, wait_s: float) -> Exception:
        self.stats["errors"] += 1
        return RateLimited(f"{shown}: rate limited, Retry-After {wait_s:.0f}s is over the "
                           f"{self.config.max_retry_after_s:.0f}s this client waits", url=url,
                           retry_after_s=wait_s)

    def unavailable(self, shown: str, url: str, last: str, last_status: int) -> Exception:
        self.stats["errors"] += 1
        if last_status == 429:
            return RateLimited(f"{shown}: still rate limited (429) after {self.attempts} attempts", url=url)
        return RefDataUnavailable(f"{shown}: failed after {self.attempts} attempts; last error: {last}",
                                  url=url, status=last_status)

    async def _fetch(self, path: str, query: dict[str, str]) -> Any:
        url = self.base_url + path
        shown = f"{self.config.name}: GET {path}" + (f"?{urlencode(query)}" if query else "")  # no key: a header
        answer = await self.send("GET", url, shown=shown, params=query, headers=self._headers())
        return self._decode(shown, url, answer.body, answer.status)

    def _decode(self, shown: str, url: str, body: bytes, status: int) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            self.stats["errors"] += 1
            raise BadResponse(f"{shown}: HTTP {status} body is not valid JSON ({e}); "
                              f"{len(body)} bytes starting {snippet(body)!r}", url=url, status=status) from None

    def bad_shape(self, what: str, value: Any) -> BadResponse:
        """A :class:`BadResponse` for JSON that decoded but has the wrong shape (and counts it)."""
        self.stats["errors"] += 1
        return BadResponse(f"{self.config.name}: {what}, got {type(value).__name__} {snippet(repr(value))!r}")


class SourceApi:
    """Base of one source's API (CoinGecko, DexScreener, Etherscan): closes its :class:`RefDataClient`."""

    client: RefDataClient

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the underlying client (and its session if it opened one); idempotent."""
        await self.client.close()
