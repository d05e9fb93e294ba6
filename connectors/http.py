"""The base of every HTTP client (venue REST, JSON-RPC, reference data): one aiohttp session, timeouts,
retries of connection errors, timeouts and 5xx with backoff and jitter, ``Retry-After`` on rate limits,
and an idempotent close.

Subclasses say what an accepted answer is and which errors to raise; counters go to :attr:`stats`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import aiohttp

from connectors.retry import Backoff, parse_retry_after
from schemas.errors import CryptoIntelError

log = logging.getLogger(__name__)


class HttpError(CryptoIntelError, RuntimeError):
    """A request that failed for good; ``status`` is the last HTTP status (0 if none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Answer:
    """One HTTP response, read whole."""

    status: int
    body: bytes
    headers: Mapping[str, str]


def snippet(body: bytes | str, n: int = 120) -> str:
    """The start of a body for an error message."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text[:n] + ("…" if len(text) > n else "")


def ok(answer: Answer) -> bool:
    return 200 <= answer.status < 300


class HttpClient:
    """Retrying requests over one session (the caller's, or one this client opens and closes)."""

    RATE_LIMITED = (429,)  # statuses that mean "slow down": wait Retry-After (or back off), then retry
    REQUESTS = "requests"  # the counter of HTTP requests made
    CAP_RETRY_AFTER = True  # without max_retry_after_s: cut a longer Retry-After to max_backoff_s (else wait it all)

    def __init__(self, *, name: str, attempts: int, backoff_s: float, max_backoff_s: float, timeout_s: float,
                 session: aiohttp.ClientSession | None = None, max_retry_after_s: float | None = None) -> None:
        self.name = name
        self.attempts = attempts
        self.backoff = Backoff(backoff_s, max_backoff_s)
        # None: a Retry-After is waited (cut to max_backoff_s if CAP_RETRY_AFTER); else a longer one raises
        self.max_retry_after_s = max_retry_after_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._owns_session = session is None
        self.stats: dict[str, int] = {self.REQUESTS: 0, "rate_limited": 0, "retries": 0}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client opened it (a session passed in belongs to the caller); idempotent."""
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    # -- what subclasses decide

    async def before_attempt(self) -> None:
        """Runs before every request (e.g. to keep a source's published request spacing)."""

    async def pause(self, seconds: float, rate_limited: bool) -> None:
        """Wait before the next attempt."""
        await asyncio.sleep(seconds)

    def rejected(self, shown: str, url: str, answer: Answer) -> Exception:
        """The error for a 4xx answer retrying would not change."""
        return HttpError(f"{shown}: rejected with HTTP {answer.status}: {snippet(answer.body)}", answer.status)

    def rate_limited(self, shown: str, url: str, answer: Answer, wait_s: float) -> Exception:
        """The error for a Retry-After longer than :attr:`max_retry_after_s`."""
        return HttpError(f"{shown}: rate limited for {wait_s:.0f}s", answer.status)

    def unavailable(self, shown: str, url: str, last: str, last_status: int) -> Exception:
        """The error once every attempt failed."""
        return HttpError(f"{shown}: failed after {self.attempts} attempts; last error: {last}", last_status)

    # -- the one retry loop

    async def send(self, method: str, url: str, *, shown: str, accept: Callable[[Answer], bool] = ok,
                   **request: Any) -> Answer:
        """The first accepted answer to ``method url``, retrying what is worth retrying."""
        last, last_status = "no attempt made", 0
        for attempt in range(1, self.attempts + 1):
            await self.before_attempt()
            self.stats[self.REQUESTS] += 1
            retry_after = None
            try:
                async with self.session().request(method, url, timeout=self._timeout, **request) as resp:
                    answer = Answer(resp.status, await resp.read(), resp.headers)
            except (aiohttp.ClientError, TimeoutError) as e:
                last, last_status = f"{type(e).__name__}: {e}".rstrip(": "), 0
            else:
                if accept(answer):
                    return answer
                last, last_status = f"HTTP {answer.status}: {snippet(answer.body)}", answer.status
                if answer.status in self.RATE_LIMITED:
                    self.stats["rate_limited"] += 1
                    retry_after = parse_retry_after(answer.headers.get("Retry-After"))
                    if retry_after is not None and self.max_retry_after_s is not None \
                            and retry_after > self.max_retry_after_s:
                        raise self.rate_limited(shown, url, answer, retry_after)
                elif answer.status < 500:
                    raise self.rejected(shown, url, answer)
                elif answer.status == 503:  # unavailable for a while: it may say how long
                    retry_after = parse_retry_after(answer.headers.get("Retry-After"))
            if attempt < self.attempts:
                if retry_after is None:
                    wait = self.backoff.step(attempt)
                elif self.max_retry_after_s is None and self.CAP_RETRY_AFTER:
                    wait = min(retry_after, self.backoff.max_s)
                else:  # a 429's was checked against max_retry_after_s above; a 503's is cut to it
                    wait = retry_after if self.max_retry_after_s is None else min(retry_after, self.max_retry_after_s)
                self.stats["retries"] += 1
                log.warning("%s: %s; retrying in %.2fs (attempt %d/%d)", shown, last, wait, attempt, self.attempts)
                await self.pause(wait, retry_after is not None or last_status in self.RATE_LIMITED)
        raise self.unavailable(shown, url, last, last_status)
