"""The live dashboard in a real headless Chromium against the real Serve app and a real feed server:
history drawn on the canvas, signals listed, then a candle, a signal and a whale alert published
through Redis appear live. Leaves a screenshot in tests/artifacts/dashboard.png."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
import pytest_asyncio

from connectors.storage.redis_feed import RedisFeed
from connectors.storage.redis_keys import RedisKeys
from serve.accounts import Accounts
from serve.feed import FeedServer
from tests.serve.api_fixtures import RunningApi
from tests.serve.browser import PIXELS, chromium_path, until

pytestmark = pytest.mark.ray

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TF = "5m"
TF_NS = 300 * 10**9


def _get(api: RunningApi, path: str, key: str | None = None) -> tuple[int, str, bytes]:
    req = urllib.request.Request(api.url + path, headers={"X-API-Key": key} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("content-type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read()


def _items(api: RunningApi, path: str) -> list[dict]:
    status, _, body = _get(api, path, api.keys["admin"])
    assert status == 200, body
    return json.loads(body)["items"]


def test_dashboard_page_and_assets_need_no_key_and_only_listed_assets_are_served(running_api: RunningApi) -> None:
    status, ctype, body = _get(running_api, "/dashboard")
    assert status == 200 and ctype.startswith("text/html") and b"<canvas" in body
    status, ctype, body = _get(running_api, "/dashboard/dashboard.js")
    assert status == 200 and "javascript" in ctype and b"dashboardState" in body
    assert _get(running_api, "/dashboard/dashboard.css")[0] == 200
    for bad in ("nope.js", "..%2Fapi.py", "%2E%2E%2Fdashboard.py", "dashboard.html", "..%2F..%2Fpyproject.toml"):
        assert _get(running_api, f"/dashboard/{bad}")[0] == 404, bad
    # the page is not part of the API contract
    _, _, schema = _get(running_api, "/openapi.json")
    assert b"/dashboard" not in schema


@pytest_asyncio.fixture(loop_scope="session")
async def feed_server(running_api: RunningApi) -> AsyncIterator[FeedServer]:
    accounts = await Accounts.create(running_api.database_url, max_size=2)
    srv = FeedServer(running_api.redis_url, accounts.authenticate, port=0, namespace=running_api.namespace,
                     block_ms=200, heartbeat_s=1.0)
    await srv.start()
    yield srv
    await srv.stop()
    await accounts.close()


def _market_with_data(api: RunningApi) -> tuple[str, dict]:
    """A market with 5m candles and signals, and its newest candle."""
    for market in api.markets:
        m = quote(market, safe="")
        candles = _items(api, f"/api/v1/markets/{m}/candles?tf={TF}&limit=1")
        if candles and _items(api, f"/api/v1/signals?market={m}&limit=1"):
            return market, candles[0]
    pytest.fail(f"no market of {api.markets} has {TF} candles and signals")


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="session")
async def test_dashboard_draws_history_and_updates_live(running_api: RunningApi, feed_server: FeedServer) -> None:
    chromium = chromium_path()
    from playwright.async_api import async_playwright

    market, newest = _market_with_data(running_api)
    key = running_api.keys["pro"]
    ws = f"ws://127.0.0.1:{feed_server.port}/ws/v1/feed"
    feed = RedisFeed.from_url(running_api.redis_url, keys=RedisKeys(namespace=running_api.namespace))
    console: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            page.on("console", lambda msg: console.append(msg.text))
            page.on("pageerror", lambda err: console.append(f"pageerror: {err}"))
            await page.goto(f"{running_api.url}/dashboard?key={key}&ws={quote(ws, safe='')}")
            await until(page, "document.getElementById('market').options.length > 0")
            await page.select_option("#market", market)
            await until(page, "window.dashboardState.market === %s" % json.dumps(market))

            # history: candles drawn, signals listed with their reasons, feed subscribed
            await until(page, "Number(document.getElementById('chart').dataset.candles) > 0")
            await until(page, "document.querySelectorAll('li.signal').length > 0")
            await until(page, "document.getElementById('status').dataset.status === 'live'")
            pixels = await page.evaluate(PIXELS)
            assert pixels["other"] > pixels["total"] * 0.01, pixels  # not a blank canvas
            assert pixels["up"] + pixels["down"] > 100, pixels  # candle bodies in candle colours
            reasons = await page.locator("li.signal .reasons").first.inner_text()
            assert reasons.strip(), "a signal is listed without its reasons"
            candles = int(await page.get_attribute("#chart", "data-candles"))
            signals = await page.locator("li.signal").count()
            # the key leaves the address bar once read
            assert key not in page.url

            # live: a new candle, then the same candle again still forming (replaced, not added), a signal
            ts = newest["open_ts"] + TF_NS
            close = newest["close"]
            bar = {"market": market, "timeframe": TF, "open_ts": ts, "close_ts": ts + TF_NS, "open": close,
                   "high": close * 1.01, "low": close * 0.995, "close": close * 1.005, "volume": 1.0}
            await feed.publish("candles", [bar])
            await until(page, f"Number(document.getElementById('chart').dataset.candles) === {candles + 1}")
            await feed.publish("candles", [{**bar, "close": close * 1.008}])
            await until(page, "window.dashboardState.candles.at(-1).close === %r" % (close * 1.008))
            assert int(await page.get_attribute("#chart", "data-candles")) == candles + 1

            sid = f"dash-test-{secrets.token_hex(4)}"
            await feed.publish("signals", [{
                "id": sid, "market": market, "timeframe": TF, "ts": ts, "kind": "trend_long", "side": "buy",
                "strength": 0.77, "price": close, "stop": close * 0.99, "targets": [close * 1.02],
                "reasons": ["live test: bullish break"], "risk_score": 0.25}])
            item = page.locator(f"li.signal[data-id='{sid}']")
            await item.wait_for(timeout=10_000)
            assert "live test: bullish break" in await item.inner_text()
            assert await page.locator("li.signal").count() == signals + 1
            assert await page.get_attribute("#status", "data-status") == "live"
            await feed.publish("alerts", [{"id": f"{sid}-whale", "ts": ts, "kind": "whale", "severity": "high",
                                           "chain": "ethereum", "message": "1,000 ETH to an exchange"}])
            await page.locator("#alerts li.whale", has_text="1,000 ETH to an exchange").wait_for(timeout=10_000)
            state = await page.evaluate("window.dashboardState.counts")
            assert state["candles"] == candles + 1 and state["signals"] == signals + 1, state
        finally:
            # also on failure: the picture usually says what went wrong
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            await browser.close()
            await feed.close()
    assert not [m for m in console if "pageerror" in m], console
    assert not [m for m in console if key in m], "the API key reached the browser console"
