"""REST calls of the venue adapters (backfills, book snapshots): retries, 429 + Retry-After, timeouts."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time

import aiohttp

from schemas.errors import CryptoIntelError


class RestError(CryptoIntelError, RuntimeError):
    """A REST call that failed for good (after retries), with the status and the venue's message."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def retry_after_s(value: str | None, default: float) -> float:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
            return max(0.0, when - time.time())
        except (TypeError, ValueError):
            return default


class VenueRest:
    """GETs against one venue's REST base URL, shared by every backfill of that venue."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, *, attempts: int = 5,
                 timeout_s: float = 10.0, backoff_s: float = 0.5, max_backoff_s: float = 30.0) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.attempts = attempts
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stats = {"requests": 0, "rate_limited": 0, "retries": 0, "failures": 0}

    async def get(self, path: str, params: dict) -> bytes:
        """Body of a successful GET; waits out 429s (Retry-After) and retries 5xx and connection errors."""
        url = self.base_url + path
        delay = self.backoff_s
        last = ""
        for attempt in range(self.attempts):
            self.stats["requests"] += 1
            try:
                async with self.session.get(url, params=params, timeout=self.timeout) as r:
                    body = await r.read()
                    if r.status == 200:
                        return body
                    last = f"HTTP {r.status}: {body[:200].decode('utf-8', 'replace')}"
                    if r.status in (418, 429):  # Binance answers 418 once an IP ignored its 429s
                        self.stats["rate_limited"] += 1
                        await asyncio.sleep(retry_after_s(r.headers.get("Retry-After"), delay))
                        continue
                    if r.status < 500:
                        self.stats["failures"] += 1
                        raise RestError(f"GET {path} {params}: {last}", r.status)
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                last = f"{type(e).__name__}: {e}"
            if attempt + 1 < self.attempts:
                self.stats["retries"] += 1
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.max_backoff_s)
        self.stats["failures"] += 1
        raise RestError(f"GET {path} failed after {self.attempts} attempts: {last}")
