"""Rate limits spent from local leases stay within the documented tolerance across replicas
(serve/limits.py): two API servers sharing one Redis bucket per key never admit more than one bucket
would (plus what leased tokens allow), refuse at most their leases early, and do not ask Redis for
every request."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from serve.api import ApiSettings
from serve.limits import LEASE_TTL_S, lease_size
from serve.tiers import tier
from tests.serve.inprocess import api_server, filled  # noqa: F401 - fixture


async def _burst(filled, username: str, requests: int) -> tuple[int, int, float, list]:
    settings = ApiSettings(filled.database_url, filled.redis_url, filled.namespace)
    key = filled.keys[username]
    async with api_server(settings) as (url_a, app_a), api_server(settings) as (url_b, app_b), \
            aiohttp.ClientSession() as s:
        async def one(url: str) -> int:
            async with s.get(f"{url}/api/v1/signals?limit=1", headers={"X-API-Key": key}) as r:
                await r.read()
                return r.status
        # warm both replicas (pools, key cache) with a key of another user
        for url in (url_a, url_b):
            async with s.get(f"{url}/api/v1/markets", headers={"X-API-Key": filled.keys["admin"]}) as r:
                assert r.status == 200
        t0 = time.monotonic()
        statuses = await asyncio.gather(*[one(url_a if i % 2 else url_b) for i in range(requests)])
        elapsed = time.monotonic() - t0
        leases = [app.state.services.limiter.leases for app in (app_a, app_b)]
    return statuses.count(200), statuses.count(429), elapsed, leases


async def test_a_burst_across_two_replicas_is_admitted_within_the_tolerance(filled):
    t = tier("pro")  # burst 100, 20/s
    admitted, refused, elapsed, leases = await _burst(filled, "pro", 400)
    assert admitted + refused == 400
    assert admitted <= t.burst + t.rate_per_s * (elapsed + LEASE_TTL_S), (admitted, elapsed)
    assert admitted >= t.burst - 2 * lease_size(t), (admitted, elapsed)
    # leases, not one round trip per request
    assert sum(leases) < 400 / 2, leases


async def test_free_tier_burst_across_two_replicas(filled):
    t = tier("free")  # burst 20, 2/s, leases of one token
    admitted, refused, elapsed, _ = await _burst(filled, "free", 80)
    assert t.burst - 2 * lease_size(t) <= admitted <= t.burst + t.rate_per_s * (elapsed + LEASE_TTL_S)
    assert refused == 80 - admitted
