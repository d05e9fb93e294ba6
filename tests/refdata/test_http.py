"""RefDataClient against a local server: cache, spacing, 429 + Retry-After, retries, errors, key hygiene."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import socket
import time

import pytest

from connectors.refdata.http import (
    BadResponse,
    ClientConfig,
    RateLimited,
    RefDataClient,
    RefDataUnavailable,
    RequestRejected,
)
from connectors.retry import parse_retry_after
from schemas.errors import ConfigError
from tests.refdata.fake_api import FakeApi, ok, status

FAST = {"backoff_s": 0.01, "max_backoff_s": 0.05}


def _client(api: FakeApi, **kw) -> RefDataClient:
    return RefDataClient(ClientConfig(base_url=api.url, name="test", **{**FAST, **kw}))


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 7, usegmt=True), now=now) == pytest.approx(7.0)
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_config_checks_and_hides_the_key() -> None:
    cfg = ClientConfig(base_url="https://example.test", api_key_header="x-cg-demo-api-key", api_key="CG-secret")
    assert "CG-secret" not in repr(cfg)
    with pytest.raises(ConfigError, match="together"):
        ClientConfig(base_url="https://example.test", api_key="CG-secret")
    with pytest.raises(ConfigError, match="base_url"):
        ClientConfig(base_url="example.test")


async def test_second_call_within_ttl_is_served_from_cache() -> None:
    async with FakeApi() as api:
        api.on("/thing", ok({"a": 1}))
        async with _client(api, cache_ttl_s=60) as client:
            assert await client.get_json("/thing", {"x": 1, "y": True}) == {"a": 1}
            # same params in another order: same cache entry
            assert await client.get_json("/thing", {"y": True, "x": 1}) == {"a": 1}
            assert len(api.calls_to("/thing")) == 1
            assert api.calls[0].query == {"x": "1", "y": "true"}
            assert client.stats["requests"] == 1 and client.stats["cache_hits"] == 1
            await client.get_json("/thing", {"x": 2})  # other params: another request
            await client.get_json("/thing", {"x": 1}, use_cache=False)
            assert len(api.calls_to("/thing")) == 3


async def test_cache_expires_and_stays_bounded() -> None:
    async with FakeApi() as api:
        api.on("/thing", ok([1]))
        async with _client(api, cache_ttl_s=0.05, cache_max_entries=2) as client:
            await client.get_json("/thing")
            await asyncio.sleep(0.06)
            await client.get_json("/thing")
            assert len(api.calls) == 2  # expired
            for i in range(3):
                await client.get_json("/thing", {"i": i})
            await client.get_json("/thing", {"i": 2})  # newest kept
            await client.get_json("/thing", {"i": 0})  # oldest evicted
            assert len(api.calls) == 6


async def test_429_waits_retry_after_then_succeeds() -> None:
    async with FakeApi() as api:
        api.on("/simple/price", status(429, "Throttled", {"Retry-After": "1"}), ok({"bitcoin": {"usd": 1.5}}))
        async with _client(api) as client:
            t0 = time.monotonic()
            body = await client.get_json("/simple/price", {"ids": "bitcoin"})
            waited = time.monotonic() - t0
        assert body == {"bitcoin": {"usd": 1.5}}
        first, second = api.calls
        assert waited >= 1.0 and second.at - first.at >= 1.0
        assert client.stats["rate_limited"] == 1 and client.stats["retries"] == 1 and client.stats["errors"] == 0


async def test_429_without_retry_after_backs_off_and_too_long_a_wait_raises() -> None:
    async with FakeApi() as api:
        api.on("/a", status(429), status(429), ok({"ok": True}))
        api.on("/b", status(429, "slow down", {"Retry-After": "3600"}))
        async with _client(api, max_retry_after_s=30) as client:
            assert await client.get_json("/a") == {"ok": True}
            assert client.stats["rate_limited"] == 2
            with pytest.raises(RateLimited, match="Retry-After 3600s") as e:
                await client.get_json("/b")
            assert e.value.retry_after_s == 3600 and len(api.calls_to("/b")) == 1
        api.on("/c", status(429))
        async with _client(api, attempts=2) as client:
            with pytest.raises(RateLimited, match="still rate limited .429. after 2 attempts"):
                await client.get_json("/c")
        assert len(api.calls_to("/c")) == 2


async def test_repeated_500_raises_unavailable_after_n_attempts() -> None:
    async with FakeApi() as api:
        api.on("/coins/markets", status(500, "Internal Server Error"))
        async with _client(api, attempts=3) as client:
            with pytest.raises(RefDataUnavailable) as e:
                await client.get_json("/coins/markets", {"ids": "bitcoin"})
        assert len(api.calls) == 3
        msg = str(e.value)
        assert "test: GET /coins/markets?ids=bitcoin: failed after 3 attempts" in msg and "HTTP 500" in msg
        assert e.value.status == 500
        assert client.stats == {**client.stats, "requests": 3, "retries": 2, "errors": 1}


async def test_5xx_then_success_and_4xx_is_not_retried() -> None:
    async with FakeApi() as api:
        api.on("/flaky", status(503), status(502), ok({"v": 2}))
        async with _client(api) as client:
            assert await client.get_json("/flaky") == {"v": 2}
            assert client.stats["retries"] == 2
            with pytest.raises(RequestRejected, match="rejected with HTTP 404") as e:
                await client.get_json("/missing")
            assert e.value.status == 404 and len(api.calls_to("/missing")) == 1


async def test_connection_refused_raises_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with RefDataClient(ClientConfig(base_url=f"http://127.0.0.1:{port}", name="gone", attempts=2,
                                          **FAST)) as client:
        with pytest.raises(RefDataUnavailable, match="gone: GET /x: failed after 2 attempts; last error: Client"):
            await client.get_json("/x")


async def test_invalid_json_raises_bad_response() -> None:
    async with FakeApi() as api:
        api.on("/trunc", ok(b'{"bitcoin": {"usd": 6718'))
        async with _client(api) as client:
            with pytest.raises(BadResponse, match="not valid JSON") as e:
                await client.get_json("/trunc")
        assert len(api.calls) == 1 and e.value.status == 200


async def test_requests_are_spaced_by_min_interval() -> None:
    async with FakeApi() as api:
        api.on("/p", ok({}))
        async with _client(api, min_interval_s=0.1, cache_ttl_s=0) as client:
            for _ in range(3):
                await client.get_json("/p")
        gaps = [b.at - a.at for a, b in zip(api.calls, api.calls[1:])]
        # spaced by the client; arrival times on the server move with its own scheduling under load
        assert len(gaps) == 2 and min(gaps) >= 0.08


async def test_api_key_is_sent_as_header_and_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeApi() as api:
        api.on("/k", status(500))
        cfg = ClientConfig(base_url=api.url, name="cg", api_key_header="x-cg-pro-api-key", api_key="CG-s3cr3t",
                           attempts=2, **FAST)
        async with RefDataClient(cfg) as client:
            with pytest.raises(RefDataUnavailable) as e:
                await client.get_json("/k")
        assert api.calls[0].headers["x-cg-pro-api-key"] == "CG-s3cr3t"
        assert "CG-s3cr3t" not in str(e.value) and "CG-s3cr3t" not in caplog.text
        assert "retrying" in caplog.text


def test_reject_counts_reasons() -> None:
    client = RefDataClient(ClientConfig(base_url="http://127.0.0.1:1"))
    client.reject("missing:usd")
    client.reject("missing:usd", "ethereum")
    client.reject("not_numeric:usd")
    assert client.stats["rejected"] == 3
    assert client.rejected_reasons == {"missing:usd": 2, "not_numeric:usd": 1}
