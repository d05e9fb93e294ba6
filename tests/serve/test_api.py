"""The HTTP API on the real Ray Serve app over HTTP: every endpoint with and without keys, each role,
pagination, validation errors, rate limits (429 then recovery), CORS, and errors in one shape."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.serve.api_fixtures import RunningApi

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PROTECTED = ["/api/v1/markets", "/api/v1/markets/{m}/candles", "/api/v1/markets/{m}/indicators",
             "/api/v1/markets/{m}/structure", "/api/v1/market/summary", "/api/v1/signals", "/api/v1/signals/x",
             "/api/v1/wallets", "/api/v1/wallets/0xabc", "/api/v1/transactions", "/api/v1/alerts",
             "/api/v1/backtests", "/api/v1/backtests/x", "/api/v1/admin/users"]


async def _get(api: RunningApi, path: str, key: str | None = "admin", **params) -> tuple[int, dict, dict]:
    headers = {"X-API-Key": api.keys[key]} if key else {}
    async with aiohttp.ClientSession() as s:
        async with s.get(api.url + path, headers=headers, params=params) as r:
            return r.status, await r.json(), dict(r.headers)


def _market(api: RunningApi) -> str:
    return next(m for m in api.markets if m.endswith("BTC"))


async def test_health_and_readiness_need_no_key(running_api: RunningApi) -> None:
    status, body, _ = await _get(running_api, "/healthz", key=None)
    assert status == 200 and body["status"] == "ok"
    status, body, _ = await _get(running_api, "/readyz", key=None)
    assert status == 200 and body["checks"]["postgres"] == "ok" and body["checks"]["redis"] == "ok"


async def test_every_protected_endpoint_needs_a_valid_key(running_api: RunningApi) -> None:
    m = _market(running_api)
    for path in PROTECTED:
        status, body, headers = await _get(running_api, path.format(m=m), key=None)
        assert status == 401 and body["error"]["code"] == "unauthorized", path
        assert headers.get("WWW-Authenticate") == "Bearer"
    async with aiohttp.ClientSession() as s:
        async with s.get(running_api.url + "/api/v1/markets", headers={"Authorization": "Bearer ci_wrong" + "x" * 40}) as r:
            assert r.status == 401
        async with s.get(running_api.url + "/api/v1/markets",
                         headers={"Authorization": f"Bearer {running_api.keys['pro']}"}) as r:
            assert r.status == 200  # bearer works as well as X-API-Key


async def test_markets_candles_indicators_structure_summary(running_api: RunningApi) -> None:
    m = _market(running_api)
    status, body, _ = await _get(running_api, "/api/v1/markets")
    assert status == 200 and m in {x["market"] for x in body["items"]}
    status, body, _ = await _get(running_api, f"/api/v1/markets/{m}/candles", tf="5m", limit=50)
    assert status == 200 and len(body["items"]) == 50 and body["next_cursor"]
    ts = [c["open_ts"] for c in body["items"]]
    assert ts == sorted(ts, reverse=True)
    # the next page continues exactly where the first ended
    status, page2, _ = await _get(running_api, f"/api/v1/markets/{m}/candles", tf="5m", limit=50, cursor=body["next_cursor"])
    assert page2["items"][0]["open_ts"] == ts[-1] - 300 * 10**9
    # a time window
    start, end = ts[-1], ts[9] + 1
    status, window, _ = await _get(running_api, f"/api/v1/markets/{m}/candles", tf="5m", start=str(start), end=str(end))
    assert [c["open_ts"] for c in window["items"]] == ts[9:]
    status, body, _ = await _get(running_api, f"/api/v1/markets/{m}/indicators", tf="5m")
    assert status == 200 and "rsi_14" in body["item"]["values"]
    status, body, _ = await _get(running_api, f"/api/v1/markets/{m}/indicators", tf="5m", names="rsi_14,ema_20")
    assert set(body["item"]["values"]) == {"rsi_14", "ema_20"}
    status, body, _ = await _get(running_api, f"/api/v1/markets/{m}/indicators", tf="5m", names="nope_3")
    assert status == 422 and body["error"]["code"] == "unknown_indicator"
    status, body, _ = await _get(running_api, f"/api/v1/markets/{m}/structure", tf="5m")
    item = body["item"]
    assert status == 200 and item["swings"] and item["breaks"]
    assert all(o["state"] not in ("mitigated", "invalidated", "swept") for o in item["fair_value_gaps"] + item["order_blocks"])
    status, body, _ = await _get(running_api, "/api/v1/market/summary", tf="5m", market=m)
    s = body["items"][0]
    assert status == 200 and s["market"] == m and s["price"] > 0 and s["volume_24h"] > 0 and "change_24h" in s


async def test_signals_pagination_and_lookup(running_api: RunningApi) -> None:
    seen, cursor = [], None
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        status, body, _ = await _get(running_api, "/api/v1/signals", **params)
        assert status == 200
        seen += [s["id"] for s in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(set(running_api.signal_ids)) and len(seen) == len(set(seen))
    status, body, _ = await _get(running_api, f"/api/v1/signals/{seen[0]}")
    assert status == 200 and body["item"]["reasons"] and "risk_score" in body["item"]
    status, body, _ = await _get(running_api, "/api/v1/signals/does-not-exist")
    assert status == 404 and body["error"]["code"] == "not_found"
    kind = body2 = None
    status, body2, _ = await _get(running_api, "/api/v1/signals", limit=1000)
    kind = body2["items"][0]["kind"]
    status, only, _ = await _get(running_api, "/api/v1/signals", kind=kind, limit=1000)
    assert only["items"] and all(s["kind"] == kind for s in only["items"])
    status, since, _ = await _get(running_api, "/api/v1/signals", since=str(body2["items"][-1]["ts"]))
    assert all(s["ts"] >= body2["items"][-1]["ts"] for s in since["items"])


async def test_on_chain_endpoints_are_empty_lists_until_filled(running_api: RunningApi) -> None:
    for path in ("/api/v1/wallets", "/api/v1/transactions", "/api/v1/alerts"):
        status, body, _ = await _get(running_api, path)
        assert status == 200 and body["items"] == [], path
    status, body, _ = await _get(running_api, "/api/v1/wallets/0xabc")
    assert status == 404


async def test_validation_errors_have_one_shape(running_api: RunningApi) -> None:
    m = _market(running_api)
    for path, params in ((f"/api/v1/markets/{m}/candles", {"limit": "0"}), (f"/api/v1/markets/{m}/candles", {"tf": "x"}),
                         ("/api/v1/signals", {"limit": "100000"}), ("/api/v1/signals", {"since": "yesterday"}),
                         ("/api/v1/signals", {"cursor": "not-a-cursor"})):
        status, body, _ = await _get(running_api, path, **params)
        assert status == 422 and set(body) == {"error"} and set(body["error"]) == {"code", "message"}, (path, body)
    status, body, _ = await _get(running_api, "/api/v1/nowhere")
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_admin_endpoints_and_roles(running_api: RunningApi) -> None:
    status, body, _ = await _get(running_api, "/api/v1/admin/users", key="pro")
    assert status == 403 and body["error"]["code"] == "forbidden"
    h = {"X-API-Key": running_api.keys["admin"]}
    async with aiohttp.ClientSession(headers=h) as s:
        async with s.post(running_api.url + "/api/v1/admin/users", json={"username": "carol", "tier": "pro"}) as r:
            assert r.status == 201
        async with s.post(running_api.url + "/api/v1/admin/users", json={"username": "carol"}) as r:
            assert r.status == 409 and (await r.json())["error"]["code"] == "conflict"
        async with s.post(running_api.url + "/api/v1/admin/users", json={"username": "bad name!"}) as r:
            assert r.status == 422
        async with s.post(running_api.url + "/api/v1/admin/users/carol/keys", json={"label": "laptop"}) as r:
            assert r.status == 201
            issued = (await r.json())["item"]
        async with s.get(running_api.url + "/api/v1/markets", headers={"X-API-Key": issued["key"]}) as r:
            assert r.status == 200
        async with s.patch(running_api.url + "/api/v1/admin/users/carol", json={"tier": "gold"}) as r:
            assert r.status == 422
        async with s.patch(running_api.url + "/api/v1/admin/users/carol", json={"tier": "free"}) as r:
            assert r.status == 200
        async with s.delete(running_api.url + f"/api/v1/admin/keys/{issued['key_id']}") as r:
            assert r.status == 200
        await asyncio.sleep(0.2)  # the revocation is pushed to every replica (AUTH_TTL_S bounds a lost push)
        async with s.get(running_api.url + "/api/v1/markets", headers={"X-API-Key": issued["key"]}) as r:
            assert r.status == 401  # revoked
        async with s.get(running_api.url + "/api/v1/admin/users") as r:
            users = {u["username"]: u for u in (await r.json())["items"]}
            assert users["carol"]["tier"] == "free"


async def test_rate_limit_returns_429_then_recovers(running_api: RunningApi) -> None:
    from serve.tiers import tier
    free = tier("free")
    headers = {"X-API-Key": running_api.keys["free"]}
    async with aiohttp.ClientSession(headers=headers) as s:
        async def one():
            async with s.get(running_api.url + "/api/v1/alerts") as r:
                return r.status, r.headers.get("Retry-After"), await r.json()
        results = await asyncio.gather(*[one() for _ in range(free.burst + 10)])
        limited = [r for r in results if r[0] == 429]
        assert limited and all(r[1] and int(r[1]) >= 1 and r[2]["error"]["code"] == "rate_limited" for r in limited)
        assert sum(r[0] == 200 for r in results) <= free.burst + 2
        await asyncio.sleep(int(limited[0][1]) + 0.2)
        status, _, _ = await one()
        assert status == 200


async def test_cors_preflight_for_configured_origin(running_api: RunningApi) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.options(running_api.url + "/api/v1/signals", headers={
                "Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "X-API-Key"}) as r:
            assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        async with s.options(running_api.url + "/api/v1/signals", headers={
                "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"}) as r:
            assert "Access-Control-Allow-Origin" not in r.headers


async def test_openapi_document_lists_every_endpoint(running_api: RunningApi) -> None:
    status, doc, _ = await _get(running_api, "/openapi.json", key=None)
    assert status == 200
    paths = set(doc["paths"])
    for p in ("/api/v1/markets", "/api/v1/markets/{symbol}/candles", "/api/v1/signals", "/api/v1/signals/{signal_id}",
              "/api/v1/market/summary", "/api/v1/backtests", "/api/v1/backtests/{backtest_id}", "/api/v1/admin/users",
              "/healthz", "/readyz"):
        assert p in paths
    assert {"HTTPBearer", "APIKeyHeader"} <= set(doc["components"]["securitySchemes"])


def test_keys_never_reach_the_logs(running_api: RunningApi, tmp_path) -> None:
    """Serve's replica and proxy logs hold request lines; no key may appear in them."""
    import glob

    import ray
    time.sleep(1)
    # this session's logs (session_latest may belong to another Ray started on the machine meanwhile)
    logs_dir = ray._private.worker.global_worker.node.get_logs_dir_path()
    logs = glob.glob(f"{logs_dir}/serve/*.log")
    assert logs
    for path in logs:
        text = open(path, errors="replace").read()
        for key in running_api.keys.values():
            assert key not in text, path
