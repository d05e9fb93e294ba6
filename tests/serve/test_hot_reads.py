"""Hot reads from the replica's memory: the same answers as storage gives, ETag/304, gzip, the key and
rate-limit checks on every cached answer, and freshness when the live feed announces new data."""

from __future__ import annotations

import asyncio
import gzip
import tempfile
import time

import aiohttp
import pytest

from serve.api import ApiSettings
from tests.serve.inprocess import api_server, filled  # noqa: F401 - fixture

HOT_PATHS = ["/api/v1/markets", "/api/v1/signals?limit=50", "/api/v1/signals?limit=3&kind=ob_retest",
             "/api/v1/market/summary", "/api/v1/alerts"]


def _market_paths(market: str) -> list[str]:
    return [f"/api/v1/markets/{market}/candles?limit=20", f"/api/v1/markets/{market}/indicators",
            f"/api/v1/markets/{market}/structure", f"/api/v1/market/summary?market={market}",
            f"/api/v1/signals?market={market}&limit=10"]


def _settings(f, hot: bool, settle_s: float = 1.0) -> ApiSettings:
    return ApiSettings(f.database_url, f.redis_url, f.namespace, hot_reads=hot, hot_settle_s=settle_s)


async def _get(session, url, key, raw: bool = False, **headers) -> tuple[int, object, bytes]:
    """Status, headers and body; ``raw``: the body as sent (not decompressed), gzip only when asked."""
    skip = ("Accept-Encoding",) if raw and "Accept-Encoding" not in headers else ()
    async with session.get(url, headers={"X-API-Key": key, **headers}, auto_decompress=not raw,
                           skip_auto_headers=skip) as r:
        return r.status, r.headers.copy(), await r.read()


async def _wait_live(app, timeout_s: float = 10.0) -> None:
    from serve.api import app_services
    svc = await app_services(app)
    deadline = time.monotonic() + timeout_s
    while not svc.hot.live:
        assert time.monotonic() < deadline, "the hot-read watcher never connected to the feed"
        await asyncio.sleep(0.02)


async def test_cached_answers_equal_the_storage_answers_byte_for_byte(filled):
    key = filled.keys["pro"]
    paths = HOT_PATHS + _market_paths(filled.markets[0]) + [f"/api/v1/signals/{filled.signal_ids[0]}"]
    async with api_server(_settings(filled, hot=True)) as (hot_url, hot_app), \
            api_server(_settings(filled, hot=False)) as (cold_url, _), aiohttp.ClientSession() as s:
        await _wait_live(hot_app)
        for path in paths:
            cold = await _get(s, cold_url + path, key)
            first = await _get(s, hot_url + path, key)  # computed, kept
            second = await _get(s, hot_url + path, key)  # from memory
            assert cold[0] == first[0] == second[0] == 200, path
            assert cold[2] == first[2] == second[2], path
            assert first[1].get("ETag") and first[1]["ETag"] == second[1].get("ETag"), (path, first[1], second[1])
        stats = hot_app.state.services.hot.stats
        assert stats.hits >= len(paths) and len(hot_app.state.services.hot) >= len(paths)


async def test_etag_gives_304_and_gzip_is_sent_when_asked(filled):
    key = filled.keys["pro"]
    path = "/api/v1/signals?limit=50"
    async with api_server(_settings(filled, hot=True)) as (url, app), aiohttp.ClientSession() as s:
        await _wait_live(app)
        status, headers, body = await _get(s, url + path, key, raw=True)
        assert status == 200 and len(body) > 1024 and "gzip" not in headers.get("Content-Encoding", "")
        etag = headers["ETag"]
        status, h304, body304 = await _get(s, url + path, key, **{"If-None-Match": etag})
        assert status == 304 and body304 == b"" and h304["ETag"] == etag
        assert (await _get(s, url + path, key, **{"If-None-Match": '"other"'}))[0] == 200
        status, hgz, zipped = await _get(s, url + path, key, raw=True, **{"Accept-Encoding": "gzip"})
        assert status == 200 and hgz["Content-Encoding"] == "gzip" and gzip.decompress(zipped) == body
        assert "accept-encoding" in hgz["Vary"].lower()
        # a cached answer still needs a valid key
        async with s.get(url + path) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
        async with s.get(url + path, headers={"X-API-Key": "x" * 40}) as r:
            assert r.status == 401


async def test_rate_limit_applies_to_cached_answers(filled):
    key = filled.keys["free"]  # burst 20, 2/s
    path = "/api/v1/signals?limit=5"
    async with api_server(_settings(filled, hot=True)) as (url, app), aiohttp.ClientSession() as s:
        await _wait_live(app)
        statuses = [(await _get(s, url + path, key))[0] for _ in range(40)]
        assert statuses.count(200) <= 20 + 2 * 2 and statuses.count(429) >= 15
        assert app.state.services.hot.stats.hits > 0


async def _push_signal(filled, template: dict, delay_db_s: float = 0.0) -> str:
    """A new signal through the store the main job uses: on the live feed now, in Postgres after its linger
    (and, with ``delay_db_s``, only that much later still)."""
    import secrets

    from actors.store import Store
    from schemas.records import Signal
    fields = {k: template[k] for k in Signal.model_fields if k in template and template[k] is not None}
    sig = Signal(**{**fields, "id": f"test-{secrets.token_hex(6)}", "ts": template["ts"] + 10**9})
    store = Store(filled.database_url, filled.redis_url, tempfile.mkdtemp(prefix="hot-spill-"),
                  namespace=filled.namespace)
    if delay_db_s:
        await store._start()
        await store.feed.publish("signals", [sig.model_dump(mode="json")])
        await asyncio.sleep(delay_db_s)
        store.writer.write("signals", __import__("connectors.storage.rows", fromlist=["signals"]).signals([sig]))
    else:
        await store.push([sig], None)
    await store.flush()
    await store.close()
    return sig.id


@pytest.mark.parametrize("db_lag_s", [0.0, 0.6])
async def test_a_new_signal_is_served_within_the_settle_bound(filled, db_lag_s):
    key = filled.keys["pro"]
    settle = 1.5
    async with api_server(_settings(filled, hot=True, settle_s=settle)) as (url, app), \
            aiohttp.ClientSession() as s:
        await _wait_live(app)
        async with s.get(f"{url}/api/v1/signals?limit=1000", headers={"X-API-Key": key}) as r:
            template = (await r.json())["items"][-1]
        path = f"{url}/api/v1/signals?since={template['ts']}&limit=100"
        for _ in range(2):  # kept, then answered from memory
            assert (await _get(s, path, key))[0] == 200
        hits = app.state.services.hot.stats.hits
        t0 = time.monotonic()
        new_id = await _push_signal(filled, template, delay_db_s=db_lag_s)
        seen = None
        while time.monotonic() - t0 < settle + db_lag_s + 3.0:
            async with s.get(path, headers={"X-API-Key": key}) as r:
                ids = [i["id"] for i in (await r.json())["items"]]
            if new_id in ids:
                seen = time.monotonic() - t0
                break
            await asyncio.sleep(0.05)
        assert seen is not None, "the new signal never reached the cached answer"
        # the store's linger (0.5 s) plus the lag we added, plus the settle window at most
        assert seen <= 0.5 + db_lag_s + settle + 1.0
        assert app.state.services.hot.stats.changes >= 1 and hits >= 1
