"""The dashboard's login form in a real headless Chromium against the real Serve app and a real feed
server: log in with a password, see history and the live feed (the feed takes the access token),
refresh the session, log out; the tokens never reach the browser's storage and the logged-out
access token is refused by the API."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest
import pytest_asyncio
import redis

from connectors.storage.redis_keys import RedisKeys
from serve.accounts import Accounts
from serve.auth_cache import AuthCache
from serve.feed import FeedServer
from tests.serve.api_fixtures import RunningApi
from tests.serve.browser import chromium_path, until

pytestmark = pytest.mark.ray

PASSWORD = "dashboard password 1"


def _call(api: RunningApi, method: str, path: str, credential: str | None = None, body: dict | None = None):
    headers = {"Content-Type": "application/json"}
    if credential:
        headers["Authorization"] = f"Bearer {credential}"
    req = urllib.request.Request(api.url + path, method=method, headers=headers,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest_asyncio.fixture(loop_scope="session")
async def session_feed(running_api: RunningApi) -> AsyncIterator[FeedServer]:
    """A feed server authenticating like the main job's feed actor: keys and access tokens."""
    accounts = await Accounts.create(running_api.database_url, max_size=2)
    auth = AuthCache(accounts, running_api.redis_url, RedisKeys(namespace=running_api.namespace))
    srv = FeedServer(running_api.redis_url, auth.authenticate, port=0, namespace=running_api.namespace,
                     block_ms=200, heartbeat_s=1.0)
    await srv.start()
    yield srv
    await srv.stop()
    await auth.close()
    await accounts.close()


def _user_with_password(api: RunningApi) -> str:
    user = f"dash-{secrets.token_hex(3)}"
    admin = api.keys["admin"]
    assert _call(api, "POST", "/api/v1/admin/users", admin, {"username": user, "tier": "pro"})[0] == 201
    assert _call(api, "PUT", f"/api/v1/admin/users/{user}/password", admin, {"password": PASSWORD})[0] == 200
    # earlier tests of the session (schemathesis's generated logins) may have locked this address out
    client = redis.Redis.from_url(api.redis_url)
    for key in client.scan_iter(RedisKeys(namespace=api.namespace).prefix + "rl:login.*"):
        client.delete(key)
    return user


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="session")
async def test_dashboard_login_form_shows_data_refreshes_and_logs_out(running_api: RunningApi,
                                                                      session_feed: FeedServer) -> None:
    chromium = chromium_path()
    from playwright.async_api import async_playwright

    user = _user_with_password(running_api)
    ws = f"ws://127.0.0.1:{session_feed.port}/ws/v1/feed"
    console: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            page.on("console", lambda msg: console.append(msg.text))
            page.on("pageerror", lambda err: console.append(f"pageerror: {err}"))
            await page.goto(f"{running_api.url}/dashboard?ws={quote(ws, safe='')}")
            await page.locator("#login-form").wait_for(state="visible")
            # a wrong password first: an error, no data, still the form
            await page.fill("#username", user)
            await page.fill("#password", "not the password")
            await page.click("#login-form button")
            await until(page, "document.getElementById('error').textContent.includes('wrong username or password')")
            assert await page.locator("#login-form").is_visible()
            async with page.expect_response("**/api/v1/auth/login") as answer:
                await page.fill("#password", PASSWORD)
                await page.click("#login-form button")
            pair = (await (await answer.value).json())["item"]
            await until(page, "window.dashboardState.auth.mode === 'session'")
            assert await page.input_value("#password") == ""
            # data over HTTP with the access token, then the live feed with it
            await until(page, "document.getElementById('market').options.length > 0")
            await until(page, "Number(document.getElementById('chart').dataset.candles) > 0")
            await until(page, "document.getElementById('status').dataset.status === 'live'")
            assert await page.locator("#logout").is_visible() and not await page.locator("#login-form").is_visible()
            assert (await page.inner_text("#who")) == user
            # the tokens live in memory only
            stored = await page.evaluate("() => JSON.stringify([Object.entries(localStorage), "
                                         "Object.entries(sessionStorage), document.cookie])")
            assert pair["access_token"] not in stored and pair["refresh_token"] not in stored, stored
            # refresh: a new pair; the page keeps working with it and the spent refresh token is dead
            await page.evaluate("() => window.dashboardSession.refresh()")
            await until(page, "window.dashboardState.auth.refreshes === 1")
            await page.select_option("#timeframe", "5m")
            await page.dispatch_event("#timeframe", "change")
            await until(page, "Number(document.getElementById('chart').dataset.candles) > 0")
            await until(page, "document.getElementById('error').textContent === ''")
            # logout: the form again, the feed closed, and the API refuses the old access token
            async with page.expect_response("**/api/v1/auth/logout") as answer:
                await page.click("#logout")
            assert (await answer.value).status == 200
            await page.locator("#login-form").wait_for(state="visible")
            await until(page, "document.getElementById('status').dataset.status === 'closed'")
            assert await page.evaluate("() => window.dashboardState.auth.mode") is None
        finally:
            await browser.close()
    status, body = _call(running_api, "GET", "/api/v1/markets", pair["access_token"])
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert not [m for m in console if "pageerror" in m], console
    assert not [m for m in console if pair["access_token"] in m or PASSWORD in m]
