"""REST calls of the venue adapters (backfills, book snapshots) on the shared HTTP client base."""

from __future__ import annotations

import aiohttp

from connectors.http import Answer, HttpClient, HttpError


class RestError(HttpError):
    """A REST call that failed for good (after retries), with the status and the venue's message."""


class VenueRest(HttpClient):
    """GETs against one venue's REST base URL, shared by every backfill of that venue."""

    RATE_LIMITED = (418, 429)  # Binance answers 418 once an IP ignored its 429s
    CAP_RETRY_AFTER = False  # retrying before a venue's Retry-After is what turns its 429s into IP bans

    def __init__(self, session: aiohttp.ClientSession, base_url: str, *, attempts: int = 5,
                 timeout_s: float = 10.0, backoff_s: float = 0.5, max_backoff_s: float = 30.0) -> None:
        super().__init__(name=base_url, attempts=attempts, backoff_s=backoff_s, max_backoff_s=max_backoff_s,
                         timeout_s=timeout_s, session=session)
        self.base_url = base_url.rstrip("/")
        self.stats["failures"] = 0

    def rejected(self, shown: str, url: str, answer: Answer) -> Exception:
        self.stats["failures"] += 1
        return RestError(f"{shown}: HTTP {answer.status}: {answer.body[:200].decode('utf-8', 'replace')}",
                         answer.status)

    def unavailable(self, shown: str, url: str, last: str, last_status: int) -> Exception:
        self.stats["failures"] += 1
        return RestError(f"{shown} failed after {self.attempts} attempts: {last}", last_status)

    async def get(self, path: str, params: dict) -> bytes:
        """Body of a successful GET; waits out 429s (Retry-After) and retries 5xx and connection errors."""
        answer = await self.send("GET", self.base_url + path, shown=f"GET {path} {params}", params=params)
        return answer.body
