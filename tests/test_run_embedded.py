"""The main job on embedded defaults: ``crypto-intel run`` in an empty directory with no DATABASE_URL or
REDIS_URL starts its own PostgreSQL and Redis, serves the API, the WebSocket feed and the dashboard,
leaves no server behind, and a second run on the same directory sees the first run's history."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from tests.storage.test_run_persists import ARTIFACTS, _free_port, _wait_for, _watch_dashboard, _watch_live

REPO = Path(__file__).resolve().parent.parent


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "CRYPTO_INTEL_API_KEY", "CRYPTO_INTEL_REDIS_NAMESPACE")}
    env["PYTHONPATH"] = str(REPO)
    return env


def _start(cwd: Path, http_port: int, ws_port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app.cli", "run", "--no-dashboard", "--http-port", str(http_port),
                             "--ws-port", str(ws_port), *extra], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


async def _get(url: str, key: str | None = None) -> tuple[int, dict]:
    headers = {"X-API-Key": key} if key else {}
    async with aiohttp.ClientSession(headers=headers) as s, s.get(url) as r:
        return r.status, await r.json()


async def _post(url: str, body: dict, key: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession(headers={"X-API-Key": key}) as s, s.post(url, json=body) as r:
        return r.status, await r.json()


def _up(url: str) -> bool:
    """The server answers 200 (it may not listen yet)."""
    try:
        return asyncio.run(_get(url))[0] == 200
    except aiohttp.ClientError:
        return False


def first_signal_s(out: str) -> float | None:
    """Seconds into the replay of the first status line that counts a signal."""
    for m in re.finditer(r"^\s*([0-9.]+)s\s.*?([0-9,]+) signals", out, re.M):
        if int(m.group(2).replace(",", "")):
            return float(m.group(1))
    return None


def _stopped_by_the_job(data: Path) -> None:
    """The job itself stopped its servers (not the watchdog after the job was gone)."""
    assert json.loads((data / "services.json").read_text())["owner_pid"] is None
    assert not (data / "logs" / "watchdog.log").read_text().strip()


def _server_pids(data: Path) -> dict[str, int]:
    state = json.loads((data / "services.json").read_text())
    return state["pids"]


@pytest.mark.slow
@pytest.mark.ray
def test_run_on_embedded_defaults_serves_everything_and_keeps_history(tmp_path: Path) -> None:
    http_port, ws_port = _free_port(), _free_port()
    proc = _start(tmp_path, http_port, ws_port, "--max-seconds", "60")
    data = tmp_path / "data"
    try:
        key_file = data / "out" / "admin-api-key"
        key = _wait_for(lambda: key_file.exists() and key_file.read_text().strip(), 150)
        pids = _wait_for(lambda: (data / "services.json").exists() and _server_pids(data), 30)
        assert {"postgres", "redis", "watchdog"} <= set(pids) and all(_alive(p) for p in pids.values())
        base = f"http://127.0.0.1:{http_port}"
        _wait_for(lambda: _up(f"{base}/healthz"), 90)
        assert asyncio.run(_get(f"{base}/api/v1/signals"))[0] == 401
        items = _wait_for(lambda: asyncio.run(_get(f"{base}/api/v1/signals?limit=50", key))[1]["items"], 60)
        assert items and all(s["market"] and s["side"] in ("buy", "sell") for s in items)
        # the models trained on the empty registry answer for a market's latest live feature row
        for path, field in (("/ml/v1/predict", "score"), ("/rl/v1/act", "action")):
            status, body = _wait_for(lambda: (r := asyncio.run(_post(base + path, {"market": "ADA_BTC",
                                                                                   "timeframe": "5m"}, key)))[0] == 200
                                     and r, 60)
            assert body["item"]["version"] == "v1" and field in body["item"], body
        live = asyncio.run(_watch_live(http_port, ws_port, key))
        assert live["candles"] > 0 and live["http_status"] == 200, live
        page = asyncio.run(_watch_dashboard(http_port, ws_port, key, ARTIFACTS / "embedded"))
        assert not page["errors"], page
        assert page["pixels"]["up"] + page["pixels"]["down"] > 100, page  # candle bodies drawn
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, out
        assert "embedded services ready" in out and "first start: admin API key" in out
        assert "xgb trained and promoted" in out and "models: xgb v1 at POST /ml/v1/predict, policy v1" in out
        assert (first_signal_s(out) or 99) <= 10, out[-3000:]  # signals within the first 10 s of the replay
        assert key not in out.split("first start: admin API key", 1)[1].split("\n", 1)[1]  # shown once
        time.sleep(1)
        assert not [name for name, pid in pids.items() if _alive(pid)], f"servers left running: {pids}"
        _stopped_by_the_job(data)
        first_ids = [json.loads(line)["id"] for line in (data / "out" / "signals.jsonl").read_text().splitlines()]
        assert first_ids

        # a second run on the same directory, replaying a file that makes no signal: the first run's
        # signals, users and keys are still there
        http_port, ws_port = _free_port(), _free_port()
        quiet = str(REPO / "engine" / "sample" / "btcusdt-trades.parquet")
        proc = _start(tmp_path, http_port, ws_port, "--max-seconds", "40", "--input", quiet)
        base = f"http://127.0.0.1:{http_port}"
        _wait_for(lambda: proc.poll() is not None or _up(f"{base}/healthz"), 150)
        assert proc.poll() is None
        status, body = asyncio.run(_get(f"{base}/api/v1/signals/{first_ids[0]}", key))
        assert status == 200 and body["item"]["id"] == first_ids[0], body
        status, body = asyncio.run(_get(f"{base}/api/v1/signals?limit=1000", key))
        assert status == 200 and len(body["items"]) >= min(len(set(first_ids)), 1000)
        market, timeframe = body["items"][0]["market"], body["items"][0]["timeframe"]
        status, body = asyncio.run(_get(f"{base}/api/v1/markets/{quote(market, safe='')}/candles"
                                        f"?tf={timeframe}&limit=10", key))
        assert status == 200 and body["items"], body  # the first run's candles too
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, out
        assert "first start" not in out and f"admin API key: in {Path('data/out/admin-api-key')}" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.ray
def test_sigterm_stops_the_job_and_its_servers(tmp_path: Path) -> None:
    proc = _start(tmp_path, _free_port(), _free_port(), "--max-seconds", "120", "--no-models")
    data = tmp_path / "data"
    try:
        pids = _wait_for(lambda: (data / "services.json").exists() and _server_pids(data), 150)
        signals = data / "out" / "signals.jsonl"
        _wait_for(lambda: signals.exists() and signals.stat().st_size > 0, 150)  # the replay is under way
        proc.terminate()
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        assert "stopped (interrupted)" in out, out[-2000:]
        time.sleep(1)
        assert not [name for name, pid in pids.items() if _alive(pid)], f"servers left running: {pids}"
        _stopped_by_the_job(data)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
