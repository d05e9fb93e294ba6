"""Backtest runs over the real HTTP API (the Serve app of api_fixtures): runs saved the way the backtest
command saves them, listed newest first page by page, one read back in full, 404 for an unknown id,
4xx for malformed ids, cursors and limits, and a key required for both endpoints."""

from __future__ import annotations

import asyncio
import base64
import secrets
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from yarl import URL

from connectors.storage.backtests import save_backtest_sync
from tests.serve.api_fixtures import RunningApi

pytestmark = [pytest.mark.ray, pytest.mark.slow]

T0 = 1_704_067_200_000_000_000  # 2024-01-01
NOW = datetime(2031, 1, 1, tzinfo=UTC)  # later than anything else in the shared database: these come first
N = 5


def _run(tag: str, i: int) -> dict:
    return dict(id=f"api-{tag}-{i}", created_at=NOW + timedelta(seconds=i), strategy="sma_cross",
                strategy_version="1", params={"fast": 10, "slow": 30 + i},
                settings={"cash": 10_000.0, "fees": {"taker_bps": 5.0}}, timeframe="1h", engine="vector",
                markets=["BINANCE:BTCUSDT"], start_ts=T0, end_ts=T0 + 3600 * 10**9 * 100, bars=100, trades=i,
                metrics={"portfolio": {"total_return": 0.01 * i, "sharpe": 1.25, "trades": i},
                         "benchmark": {"total_return": 0.02}, "markets": {"BINANCE:BTCUSDT": {"trades": i}},
                         "counters": {"fills": 2 * i}},
                out_dir=f"/tmp/backtests/{tag}-{i}")


@pytest.fixture(scope="module")
def runs(running_api: RunningApi) -> tuple[str, list[dict], str]:
    """Runs saved into the API's database, and a key of this module's own (a user, not an admin)."""
    from serve.accounts import Accounts
    tag = secrets.token_hex(3)
    saved = [_run(tag, i) for i in range(N)]
    for run in saved:
        save_backtest_sync(running_api.database_url, run)
    save_backtest_sync(running_api.database_url, saved[0])  # saved again: still one run

    async def key() -> str:
        accounts = await Accounts.create(running_api.database_url, max_size=1)
        try:
            await accounts.create_user(f"bt-user-{tag}", tier="enterprise")
            return await accounts.issue_key(f"bt-user-{tag}", role="user")
        finally:
            await accounts.close()
    return tag, saved, asyncio.run(key())


async def _get(api: RunningApi, target: str, key: str | None, **params) -> tuple[int, dict]:
    """``target`` goes on the wire as given (already percent-encoded)."""
    headers = {"X-API-Key": key} if key else {}
    async with aiohttp.ClientSession() as s:
        async with s.get(URL(api.url + target, encoded=True), headers=headers, params=params or None) as r:
            assert r.headers.get("Content-Type", "").startswith("application/json"), target
            return r.status, await r.json()


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * 10**9 + dt.microsecond * 1000


def _assert_error(status: int, body: dict, statuses: set[int], code: str | None = None) -> None:
    assert status in statuses, (status, body)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    if code is not None:
        assert body["error"]["code"] == code, body


async def test_list_newest_first_page_by_page(running_api: RunningApi, runs) -> None:
    tag, saved, key = runs
    status, body = await _get(running_api, "/api/v1/backtests", key)
    assert status == 200 and set(body) == {"items", "next_cursor"}
    mine = [r for r in body["items"] if r["id"].startswith(f"api-{tag}-")]
    assert [r["id"] for r in mine] == [r["id"] for r in reversed(saved)]
    assert body["items"][:N] == mine  # nothing in the database is newer
    first = mine[-1]
    assert set(first) == {"id", "created_at", "strategy", "strategy_version", "params", "timeframe", "engine",
                          "markets", "start_ts", "end_ts", "bars", "trades", "summary"}
    run = saved[0]
    assert first["summary"] == run["metrics"]["portfolio"] and first["params"] == run["params"]
    assert first["created_at"] == _ns(run["created_at"]) and first["start_ts"] == T0
    assert first["markets"] == run["markets"] and first["engine"] == "vector" and first["bars"] == 100
    # pages of 2 walk the same list, each run once
    seen, cursor = [], None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, page = await _get(running_api, "/api/v1/backtests", key, **params)
        assert status == 200 and len(page["items"]) <= 2
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [r["id"] for r in body["items"]] and len(seen) == len(set(seen))


async def test_get_one_in_full(running_api: RunningApi, runs) -> None:
    tag, saved, key = runs
    run = saved[3]
    status, body = await _get(running_api, f"/api/v1/backtests/{run['id']}", key)
    assert status == 200 and set(body) == {"item"}
    assert body["item"] == {**run, "created_at": _ns(run["created_at"])}
    status, body = await _get(running_api, f"/api/v1/backtests/{run['id']}", running_api.keys["pro"])
    assert status == 200  # any user, no admin role needed


async def test_unknown_and_malformed_ids(running_api: RunningApi, runs) -> None:
    tag, _, key = runs
    status, body = await _get(running_api, f"/api/v1/backtests/api-{tag}-nope", key)
    _assert_error(status, body, {404}, "not_found")
    for bad in ("-lead", "a%20b", "a%2Fb", "%C3%A9", "x" * 129, "a;DROP%20TABLE%20backtests"):
        status, body = await _get(running_api, f"/api/v1/backtests/{bad}", key)
        _assert_error(status, body, {404, 422}, None)
        assert status == 422 or bad == "a%2Fb", (bad, status)  # %2F may be routed as a path separator (404)
    for bad in ("%00", "a%00b", "%ED%A0%80", "%FF"):
        status, body = await _get(running_api, f"/api/v1/backtests/{bad}", key)
        _assert_error(status, body, {422}, "invalid_text")


async def test_bad_limits_and_cursors(running_api: RunningApi, runs) -> None:
    _, _, key = runs
    for limit in ("0", "-1", "1001", "abc", "1.5"):
        status, body = await _get(running_api, f"/api/v1/backtests?limit={limit}", key)
        _assert_error(status, body, {422})

    def b64(s: str) -> str:
        return base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")
    for cursor in ("not-a-cursor", b64("123"), b64("abc|id"), b64("1|"), b64(f"{10**30}|id"), "%%%"):
        status, body = await _get(running_api, f"/api/v1/backtests?cursor={cursor}", key)
        _assert_error(status, body, {422}, "invalid_cursor")


async def test_a_key_is_required(running_api: RunningApi, runs) -> None:
    _, saved, _ = runs
    for path in ("/api/v1/backtests", f"/api/v1/backtests/{saved[0]['id']}", "/api/v1/backtests/nope"):
        status, body = await _get(running_api, path, None)
        _assert_error(status, body, {401}, "unauthorized")
        status, body = await _get(running_api, path, "ci_wrong" + "x" * 40)
        _assert_error(status, body, {401}, "unauthorized")


async def test_openapi_lists_the_backtest_endpoints(running_api: RunningApi) -> None:
    status, doc = await _get(running_api, "/openapi.json", None)
    assert status == 200
    for path in ("/api/v1/backtests", "/api/v1/backtests/{backtest_id}"):
        assert doc["paths"][path]["get"]["tags"] == ["backtests"], path
    assert {"BacktestPage", "BacktestItem", "BacktestSummary", "Backtest"} <= set(doc["components"]["schemas"])
