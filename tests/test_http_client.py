"""The one HTTP retry loop every connector shares (connectors/http.py), against a real local server:
what is retried, how long Retry-After is waited, what gives up at once, and an idempotent close."""

from __future__ import annotations

import time

import pytest
from aiohttp import web

from connectors.http import HttpClient, HttpError
from connectors.retry import Backoff, parse_retry_after
from connectors.venues.rest import VenueRest


class Script:
    """A local server answering each request with the next (status, headers) of a script, then 200."""

    def __init__(self, *answers: tuple[int, dict]) -> None:
        self.answers = list(answers)
        self.seen: list[float] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(time.monotonic())
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        return web.Response(status=status, headers=headers, text="ok" if status == 200 else f"status {status}")

    async def __aenter__(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


def _client(**kw) -> HttpClient:
    return HttpClient(name="t", **{"attempts": 4, "backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 5, **kw})


async def test_5xx_and_429_are_retried_with_their_retry_after() -> None:
    script = Script((500, {}), (429, {"Retry-After": "0.3"}), (503, {"Retry-After": "0.2"}))
    async with script as url, _client(max_retry_after_s=5) as client:
        answer = await client.send("GET", url + "/x", shown="GET /x")
    assert answer.status == 200 and answer.body == b"ok"
    gaps = [b - a for a, b in zip(script.seen, script.seen[1:])]
    assert gaps[1] >= 0.3 and gaps[2] >= 0.2  # both waits honoured, the 503's too
    assert client.stats == {"requests": 4, "rate_limited": 1, "retries": 3}


async def test_4xx_gives_up_at_once_and_a_long_retry_after_raises() -> None:
    async with Script((404, {})) as url, _client() as client:
        with pytest.raises(HttpError) as e:
            await client.send("GET", url + "/missing", shown="GET /missing")
    assert e.value.status == 404 and client.stats["requests"] == 1
    async with Script((429, {"Retry-After": "3600"})) as url, _client(max_retry_after_s=60) as client:
        with pytest.raises(HttpError, match="rate limited for 3600s"):
            await client.send("GET", url, shown="GET /")
    assert client.stats["requests"] == 1  # nobody sat out an hour


async def test_every_attempt_failing_is_unavailable_and_close_is_idempotent() -> None:
    client = _client(attempts=3)
    async with Script((502, {}), (502, {}), (502, {})) as url:
        with pytest.raises(HttpError, match="failed after 3 attempts; last error: HTTP 502"):
            await client.send("GET", url, shown="GET /")
    await client.close()
    await client.close()


async def test_the_cap_on_retry_after_is_the_client_s_choice() -> None:
    # the JSON-RPC and reference-data clients cut a Retry-After to their longest backoff; a venue is
    # waited out in full, since retrying early is what turns a venue's 429s into IP bans
    async with Script((429, {"Retry-After": "0.4"})) as url, _client() as client:
        t0 = time.monotonic()
        await client.send("GET", url, shown="GET /")
    assert time.monotonic() - t0 < 0.3
    import aiohttp
    script = Script((418, {"Retry-After": "0.4"}))
    async with script as url, aiohttp.ClientSession() as session:
        rest = VenueRest(session, url, backoff_s=0.01, max_backoff_s=0.05)
        assert await rest.get("/api/v3/depth", {"symbol": "BTCUSDT"}) == b"ok"
    assert script.seen[1] - script.seen[0] >= 0.4 and rest.stats["rate_limited"] == 1


def test_backoff_doubles_with_equal_jitter_and_resets() -> None:
    b = Backoff(0.1, 0.4)
    assert [b.base(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.4]
    for _ in range(200):
        assert 0.05 <= b.step(1) <= 0.1 and 0.2 <= b.step(5) <= 0.4
    first = [b.next() for _ in range(3)]
    assert first[2] >= 0.2
    b.reset()
    assert b.next() <= 0.1
    assert parse_retry_after("nan") is None and parse_retry_after("7") == 7.0
