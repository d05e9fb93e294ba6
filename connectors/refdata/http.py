"""A small async JSON GET client for reference-data APIs: TTL cache, request spacing, 429 and 5xx retries.

One :class:`RefDataClient` talks to one source over one ``aiohttp.ClientSession``. Every request waits
its turn (``min_interval_s`` apart, the source's published rate limit), a 429 pushes the next turn back
by ``Retry-After`` for every caller of the client, and 5xx answers or connection errors are retried with
exponential backoff and jitter. Failures end in a :class:`RefDataError` subclass that says what happened.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlencode

import aiohttp
import orjson

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


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP-date); None if absent/unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _param_text(value: ParamValue) -> str:
    # JSON APIs want lower-case booleans; yarl refuses bools outright
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class RefDataClient:
    """Cached, rate-limited JSON GETs against one source; counters in :attr:`stats`."""

    def __init__(self, config: ClientConfig, session: aiohttp.ClientSession | None = None, *,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.now_ns = clock_ns  # fetch time of records without a source timestamp
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._cache: OrderedDict[CacheKey, tuple[float, Any]] = OrderedDict()
        self._turn = asyncio.Lock()
        self._next_at = 0.0  # monotonic time the next request may start
        self.stats: dict[str, int] = {"requests": 0, "cache_hits": 0, "rate_limited": 0, "retries": 0,
                                      "errors": 0, "rejected": 0, "not_found": 0}
        self.rejected_reasons: dict[str, int] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client opened it (a session passed in belongs to the caller)."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

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

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self.config.user_agent}
        if self.config.api_key_header and self.config.api_key:
            headers[self.config.api_key_header] = self.config.api_key
        return headers

    def _backoff(self, attempt: int) -> float:
        base = min(self.config.max_backoff_s, self.config.backoff_s * 2 ** (attempt - 1))
        return base / 2 + random.random() * base / 2  # equal jitter: never less than half the step

    def _defer(self, seconds: float) -> None:
        """Hold every caller of this client back for ``seconds`` (a 429 concerns the whole client)."""
        self._next_at = max(self._next_at, time.monotonic() + seconds)

    async def _wait_turn(self) -> None:
        async with self._turn:
            # loop: a 429 seen by another caller may push the turn back while this one sleeps
            while (wait := self._next_at - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            self._next_at = time.monotonic() + self.config.min_interval_s

    async def _fetch(self, path: str, query: dict[str, str]) -> Any:
        cfg = self.config
        url = self.base_url + path
        shown = f"{cfg.name}: GET {path}" + (f"?{urlencode(query)}" if query else "")  # no key: it is a header
        last = "no attempt made"
        last_status = 0
        for attempt in range(1, cfg.attempts + 1):
            await self._wait_turn()
            self.stats["requests"] += 1
            try:
                async with self._session_now().get(url, params=query, headers=self._headers(),
                                                   timeout=self._timeout) as resp:
                    body = await resp.read()
                    status, retry_after = resp.status, resp.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError) as e:
                last, last_status = f"{type(e).__name__}: {e}".rstrip(": "), 0
            else:
                if 200 <= status < 300:
                    return self._decode(shown, url, body, status)
                last, last_status = f"HTTP {status}: {_snippet(body)}", status
                if status == 429:
                    self.stats["rate_limited"] += 1
                    wait = parse_retry_after(retry_after)
                    if wait is not None and wait > cfg.max_retry_after_s:
                        self.stats["errors"] += 1
                        raise RateLimited(f"{shown}: rate limited, Retry-After {wait:.0f}s is over the "
                                          f"{cfg.max_retry_after_s:.0f}s this client waits", url=url,
                                          retry_after_s=wait)
                    if attempt == cfg.attempts:
                        break
                    wait = self._backoff(attempt) if wait is None else wait
                    self.stats["retries"] += 1
                    log.warning("%s: rate limited (429), waiting %.2fs (attempt %d/%d)",
                                shown, wait, attempt, cfg.attempts)
                    self._defer(wait)
                    continue
                if status < 500:
                    self.stats["errors"] += 1
                    raise RequestRejected(f"{shown}: rejected with {last}", url=url, status=status)
            # 5xx, timeout or connection error: worth another try
            if attempt < cfg.attempts:
                wait = self._backoff(attempt)
                self.stats["retries"] += 1
                log.warning("%s: %s; retrying in %.2fs (attempt %d/%d)", shown, last, wait, attempt, cfg.attempts)
                await asyncio.sleep(wait)
        self.stats["errors"] += 1
        if last_status == 429:
            raise RateLimited(f"{shown}: still rate limited (429) after {cfg.attempts} attempts", url=url)
        raise RefDataUnavailable(f"{shown}: failed after {cfg.attempts} attempts; last error: {last}",
                                 url=url, status=last_status)

    def _decode(self, shown: str, url: str, body: bytes, status: int) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            self.stats["errors"] += 1
            raise BadResponse(f"{shown}: HTTP {status} body is not valid JSON ({e}); "
                              f"{len(body)} bytes starting {_snippet(body)!r}", url=url, status=status) from None

    def bad_shape(self, what: str, value: Any) -> BadResponse:
        """A :class:`BadResponse` for JSON that decoded but has the wrong shape (and counts it)."""
        self.stats["errors"] += 1
        return BadResponse(f"{self.config.name}: {what}, got {type(value).__name__} {_snippet(repr(value))!r}")


def _snippet(body: bytes | str, n: int = 120) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text[:n] + ("…" if len(text) > n else "")
