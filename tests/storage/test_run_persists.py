"""``crypto-intel run`` with DATABASE_URL and REDIS_URL: rows reach Postgres while it runs, the feed
and checkpoints reach Redis, the API, the WebSocket feed and the dashboard (in headless Chromium)
show the running replay live, and what Postgres holds matches the signals file."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
import redis

from tests.serve.browser import PIXELS, chromium_path, until
from tests.storage.pg_fixtures import pg_db, pg_url  # noqa: F401 - fixtures
from tests.storage.redis_fixtures import redis_url  # noqa: F401 - fixture

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


async def _counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT to_regclass('candles') IS NOT NULL"):
            return {}
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in ("candles", "signals", "structure_events")}
    finally:
        await conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(check, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError("condition not met in time")


async def _watch_live(http_port: int, ws_port: int, key: str) -> dict:
    """Subscribe to the running job's feed and read its candles; call the API with the same key."""
    import aiohttp
    from websockets.asyncio.client import connect
    out = {"candles": 0, "seqs": [], "http_status": None}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # Serve and the feed come up a little after the first rows
        try:
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{http_port}/api/v1/signals?limit=5", headers={"X-API-Key": key}) as r:
                    out["http_status"] = r.status
            async with connect(f"ws://127.0.0.1:{ws_port}/ws/v1/feed?key={key}") as ws:
                await ws.send(json.dumps({"op": "subscribe", "channels": ["candles:*"]}))
                while out["candles"] < 20 and time.monotonic() < deadline:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    if msg.get("op") == "data":
                        out["candles"] += 1
                        out["seqs"].append(tuple(int(x) for x in msg["seq"].split("-")))
                return out
        except (OSError, aiohttp.ClientError):
            await asyncio.sleep(1)
    return out


async def _watch_dashboard(http_port: int, ws_port: int, key: str, artifacts: Path) -> dict:
    """Open the dashboard of the running job in headless Chromium; wait for history, a signal and live candles."""
    from urllib.parse import quote

    import aiohttp
    from playwright.async_api import async_playwright
    signal = None
    deadline = time.monotonic() + 90
    async with aiohttp.ClientSession(headers={"X-API-Key": key}) as s:
        while signal is None and time.monotonic() < deadline:  # the replay's first signal may still be coming
            async with s.get(f"http://127.0.0.1:{http_port}/api/v1/signals?limit=1") as r:
                items = (await r.json())["items"]
            signal = items[0] if items else None
            if signal is None:
                await asyncio.sleep(1)
    assert signal is not None, "no signal reached the API while the replay ran"
    ws = f"ws://127.0.0.1:{ws_port}/ws/v1/feed"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        try:
            await page.goto(f"http://127.0.0.1:{http_port}/dashboard?key={key}&ws={quote(ws, safe='')}")
            await until(page, "document.getElementById('market').options.length > 0", 30)
            await page.select_option("#timeframe", signal["timeframe"])
            await page.select_option("#market", signal["market"])
            await until(page, "window.dashboardState.market === %s" % json.dumps(signal["market"]))
            await until(page, "Number(document.getElementById('chart').dataset.candles) > 0", 30)
            await until(page, "document.querySelectorAll('li.signal').length > 0", 30)
            # the replay keeps running: candles of this market arrive over the feed and are drawn
            await until(page, "window.dashboardState.counts.live_candles > 0", 60)
            state = await page.evaluate("window.dashboardState.counts")
            pixels = await page.evaluate(PIXELS)
        finally:
            artifacts.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(artifacts / "dashboard-live-replay.png"), full_page=True)
            await browser.close()
    return {"state": state, "pixels": pixels, "errors": errors}


@pytest.mark.slow
@pytest.mark.ray
def test_run_with_database_and_redis_persists_while_running(pg_db: str, redis_url: str, tmp_path: Path) -> None:
    namespace = f"test-run-{secrets.token_hex(4)}"
    env = {**os.environ, "DATABASE_URL": pg_db, "REDIS_URL": redis_url, "CRYPTO_INTEL_REDIS_NAMESPACE": namespace}
    http_port, ws_port = _free_port(), _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "run", "--max-seconds", "90", "--no-dashboard",
                             "--out-dir", str(tmp_path), "--checkpoint-s", "5", "--http-port", str(http_port),
                             "--ws-port", str(ws_port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = redis.Redis.from_url(redis_url)
    try:
        seen_while_running = {}
        deadline = time.monotonic() + 150
        while proc.poll() is None and time.monotonic() < deadline:
            seen_while_running = asyncio.run(_counts(pg_db))
            if seen_while_running.get("candles", 0) > 0:
                break
            time.sleep(1)
        assert proc.poll() is None, "run ended before anything reached Postgres"
        assert seen_while_running.get("candles", 0) > 0
        # while the replay runs: the API answers with the first-run admin key, and the feed streams it live
        key_file = tmp_path / "admin-api-key"
        key = _wait_for(lambda: key_file.exists() and key_file.read_text().strip(), 120)
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        live = asyncio.run(_watch_live(http_port, ws_port, key))
        assert live["candles"] > 0 and live["http_status"] == 200, live
        assert all(a < b for a, b in zip(live["seqs"], live["seqs"][1:]))  # sequence numbers only grow
        # the dashboard against the same running replay, in a real browser
        page = asyncio.run(_watch_dashboard(http_port, ws_port, key, ARTIFACTS))
        assert not page["errors"], page
        assert page["state"]["live_candles"] > 0 and page["state"]["signals"] > 0, page
        assert page["pixels"]["up"] + page["pixels"]["down"] > 100, page  # candle bodies drawn on the canvas
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, out
        after = asyncio.run(_counts(pg_db))
        assert after["candles"] > 0 and after["signals"] > 0 and after["structure_events"] > 0, (after, out)
        assert "0 refused" in out and "Postgres:" in out
        # Postgres holds exactly the signals the run wrote to its file
        file_ids = {json.loads(line)["id"] for line in (tmp_path / "signals.jsonl").read_text().splitlines()}

        async def ids():
            conn = await asyncpg.connect(pg_db)
            try:
                return {r["id"] for r in await conn.fetch("SELECT id FROM signals")}
            finally:
                await conn.close()
        assert asyncio.run(ids()) == file_ids
        assert client.xlen(f"{namespace}:v1:feed:candles") > 0
        assert client.xlen(f"{namespace}:v1:feed:signals") == min(len(file_ids), 100_000)
        assert client.exists(f"{namespace}:v1:ckpt:run:0")
    finally:
        if proc.poll() is None:
            proc.kill()
        for key in client.scan_iter(f"{namespace}:*"):
            client.delete(key)
