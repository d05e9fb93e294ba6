"""The model and policy deployments over real Serve and HTTP: /ml/v1/predict and /rl/v1/act on explicit rows
and on a market's live feature row in real Redis, version selection, the one error shape, keys and rate
limits, 503 until a version is promoted, and hot swap under a steady stream of requests."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import redis

from connectors.models.registry import Registry
from tests.serve.api_fixtures import RunningApi
from tests.serve.models_artefacts import FEATURES, feature_rows, register_policy, register_xgb

pytestmark = pytest.mark.ray
MARKET = "TEST:LTCBTC"


@dataclass
class Models:
    api: RunningApi
    root: Path
    boosters: dict  # version -> Booster
    policy: object  # the PPO model behind policy v1
    rows: np.ndarray
    key: str  # an enterprise key of this module (its own rate-limit bucket)
    live_ts: int


def _post(url: str, body: dict, key: str | None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **({"X-API-Key": key} if key else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


async def _user(database_url: str, tier: str) -> str:
    from serve.accounts import Accounts
    accounts = await Accounts.create(database_url, max_size=1)
    try:
        name = f"models-{tier}-{secrets.token_hex(3)}"
        await accounts.create_user(name, tier=tier)
        return await accounts.issue_key(name, role="user")
    finally:
        await accounts.close()


def _until(check, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while True:
        out = check()
        if out or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


@pytest.fixture(scope="module")
def models(running_api: RunningApi, tmp_path_factory) -> Models:
    from serve.models import deploy_models, undeploy_models
    from connectors.storage.latest_cache import LatestCache
    from connectors.storage.redis_keys import RedisKeys
    root = tmp_path_factory.mktemp("registry")
    key = asyncio.run(_user(running_api.database_url, "enterprise"))
    # before the deployments exist the routes answer 503 in the error shape
    status, body = _post(running_api.url + "/ml/v1/predict", {"features": [[0.0] * 5]}, key)
    assert status == 503 and body["error"]["code"] == "model_unavailable", body
    v1, b1 = register_xgb(root, rounds=20, promote=True)
    v2, b2 = register_xgb(root, rounds=40, depth=4)
    _, policy = register_policy(root)  # registered, not promoted yet
    X, _ = feature_rows()
    client = redis.Redis.from_url(running_api.redis_url)
    live_ts = 1_700_000_000_000_000_000
    # a live row as the pipeline publishes it: names in another order, one warm-up null
    names = list(reversed(FEATURES)) + ["extra"]
    values = [None if np.isnan(v) else float(v) for v in X[-1][::-1]] + [1.0]
    keys = RedisKeys(namespace=running_api.namespace)
    record = {"market": MARKET, "timeframe": "5m", "ts": live_ts, "names": names, "values": values}

    async def publish() -> None:  # as the pipeline's store actor does
        cache = LatestCache.from_url(running_api.redis_url, keys=keys)
        await cache.put("features", f"{MARKET}|5m", record)
        await cache.close()
    asyncio.run(publish())
    serving = deploy_models(root, poll_s=0.2)
    assert serving == {"xgb": v1, "policy": None}
    time.sleep(2.1)  # the API forgets a missing deployment after 2 s
    try:
        yield Models(running_api, root, {v1: b1, v2: b2}, policy, X, key, live_ts)
    finally:
        undeploy_models()
        client.delete(keys.latest("features", f"{MARKET}|5m"))


def test_predict_rows_match_the_model_in_process(models: Models) -> None:
    rows = models.rows[100:132]
    status, body = _post(models.api.url + "/ml/v1/predict", {"features": rows.tolist()}, models.key)
    assert status == 200, body
    item = body["item"]
    assert item["version"] == "v1" and item["model"] == "xgb" and len(item["scores"]) == 32
    np.testing.assert_allclose(item["scores"], models.boosters["v1"].inplace_predict(rows), rtol=1e-6)
    status, body = _post(models.api.url + "/ml/v1/predict", {"features": [[None, 0.1, 0.2, 0.01, 1.0]]}, models.key)
    assert status == 200 and 0 < body["item"]["score"] < 1, body


def test_predict_market_scores_the_live_feature_row(models: Models) -> None:
    status, body = _post(models.api.url + "/ml/v1/predict", {"market": MARKET, "timeframe": "5m"}, models.key)
    assert status == 200, body
    item = body["item"]
    assert item["market"] == MARKET and item["ts"] == models.live_ts and item["version"] == "v1"
    expected = models.boosters["v1"].inplace_predict(models.rows[-1:])[0]
    assert item["score"] == pytest.approx(float(expected), rel=1e-6)
    status, body = _post(models.api.url + "/ml/v1/predict", {"market": "TEST:NOPE"}, models.key)
    assert status == 404 and body["error"]["code"] == "not_found", body


def test_predict_named_version_and_unknown_version(models: Models) -> None:
    rows = models.rows[:8].tolist()
    status, body = _post(models.api.url + "/ml/v1/predict", {"features": rows, "version": "v2"}, models.key)
    assert status == 200 and body["item"]["version"] == "v2", body
    np.testing.assert_allclose(body["item"]["scores"], models.boosters["v2"].inplace_predict(models.rows[:8]),
                               rtol=1e-6)
    status, body = _post(models.api.url + "/ml/v1/predict", {"features": rows, "version": "v9"}, models.key)
    assert status == 404 and body["error"]["code"] == "unknown_version", body


@pytest.mark.parametrize("body,code", [
    ({"features": [[0.1, 0.2, 0.3]]}, "invalid_rows"),  # wrong width
    ({"features": [[0.1] * 5, [0.1] * 4]}, "invalid_rows"),  # ragged
    ({"features": []}, "invalid_request"),
    ({"features": [["a", 1, 2, 3, 4]]}, "invalid_request"),
    ({}, "invalid_request"),
    ({"market": MARKET, "features": [[0.1] * 5]}, "invalid_request"),
    ({"features": [[0.1] * 5], "surprise": 1}, "invalid_request"),
    ({"features": [[0.1] * 5], "version": "../v1"}, "invalid_request"),
])
def test_predict_bad_requests_answer_422_in_the_error_shape(models: Models, body: dict, code: str) -> None:
    status, out = _post(models.api.url + "/ml/v1/predict", body, models.key)
    assert status == 422, out
    assert set(out) == {"error"} and set(out["error"]) == {"code", "message"} and out["error"]["code"] == code, out


def test_model_routes_need_a_key_and_are_rate_limited(models: Models) -> None:
    for path in ("/ml/v1/predict", "/rl/v1/act", "/ml/v1/anomaly/detect"):
        status, out = _post(models.api.url + path, {"features": [[0.0] * 5]}, None)
        assert status == 401 and out["error"]["code"] == "unauthorized", out
    status, out = _post(models.api.url + "/ml/v1/predict", {"features": [[0.0] * 5]}, "ci_not-a-real-key-0000")
    assert status == 401, out
    free = asyncio.run(_user(models.api.database_url, "free"))  # burst 20, 2/s

    async def burst() -> list[int]:
        async with aiohttp.ClientSession() as s:
            async def one() -> int:
                async with s.post(models.api.url + "/ml/v1/predict", json={"features": [[0.0] * 5]},
                                  headers={"X-API-Key": free}) as r:
                    body = await r.json()
                    if r.status == 429:
                        assert body["error"]["code"] == "rate_limited" and "Retry-After" in r.headers
                    return r.status
            return list(await asyncio.gather(*[one() for _ in range(40)]))
    statuses = asyncio.run(burst())
    assert statuses.count(200) >= 15 and statuses.count(429) >= 10, statuses


def test_act_answers_503_until_a_policy_is_promoted_then_matches_it(models: Models) -> None:
    obs = np.nan_to_num(models.rows[200:210])
    status, out = _post(models.api.url + "/rl/v1/act", {"observation": obs.tolist()}, models.key)
    assert status == 503 and out["error"]["code"] == "model_unavailable", out
    Registry(models.root).promote("policy", "v1")
    got = _until(lambda: (r := _post(models.api.url + "/rl/v1/act", {"observation": obs.tolist()}, models.key))[0]
                 == 200 and r)
    assert got, "the promoted policy was not picked up"
    item = got[1]["item"]
    assert item["version"] == "v1" and item["model"] == "policy"
    expected, _ = models.policy.predict(obs, deterministic=True)
    assert item["actions"] == expected.tolist()
    probs = np.array(item["probabilities"])
    assert probs.shape == (10, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert (probs.argmax(axis=1) == expected).all()
    status, out = _post(models.api.url + "/rl/v1/act", {"market": MARKET}, models.key)
    assert status == 200, out
    assert out["item"]["action"] == int(models.policy.predict(np.nan_to_num(models.rows[-1:]), deterministic=True)[0][0])
    assert len(out["item"]["probs"]) == 3 and out["item"]["ts"] == models.live_ts
    status, out = _post(models.api.url + "/rl/v1/act", {"observation": [[0.0] * 4]}, models.key)
    assert status == 422 and out["error"]["code"] == "invalid_rows", out


def test_hot_swap_under_load_drops_nothing_and_switches_version(models: Models) -> None:
    """Clients keep predicting while v2 is promoted: every request succeeds, each answer's scores are those
    of the version it names, and after the swap every answer comes from v2."""
    rows = models.rows[300:304]
    expected = {v: b.inplace_predict(rows) for v, b in models.boosters.items()}
    url = models.api.url + "/ml/v1/predict"
    results: list[tuple[float, int, dict]] = []

    async def run() -> float:
        stop = asyncio.Event()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            async def client() -> None:
                while not stop.is_set():
                    async with s.post(url, json={"features": rows.tolist()}, headers={"X-API-Key": models.key}) as r:
                        results.append((time.monotonic(), r.status, await r.json()))
            tasks = [asyncio.create_task(client()) for _ in range(4)]
            await asyncio.sleep(1.5)
            promoted_at = time.monotonic()
            await asyncio.to_thread(Registry(models.root).promote, "xgb", "v2")
            while time.monotonic() - promoted_at < 10:
                await asyncio.sleep(0.1)
                if any(t > promoted_at and b.get("item", {}).get("version") == "v2" for t, _, b in results):
                    break
            await asyncio.sleep(1.5)
            stop.set()
            await asyncio.gather(*tasks)
        return promoted_at

    promoted_at = asyncio.run(run())
    failed = [(st, b) for _, st, b in results if st != 200]
    assert not failed, failed[:3]
    assert len(results) > 40, len(results)
    for _, _, b in results:
        np.testing.assert_allclose(b["item"]["scores"], expected[b["item"]["version"]], rtol=1e-6)
    before = {b["item"]["version"] for t, _, b in results if t < promoted_at}
    assert before == {"v1"}, before
    first_v2 = min(t for t, _, b in results if b["item"]["version"] == "v2")
    assert first_v2 - promoted_at < 3.0, first_v2 - promoted_at
    settled = [b["item"]["version"] for t, _, b in results if t > first_v2 + 0.5]
    assert settled and set(settled) == {"v2"}, settled
    print(f"\nhot swap: {len(results)} requests, none failed; v2 answered {first_v2 - promoted_at:.2f}s after promote")


def test_a_promoted_version_that_fails_to_load_leaves_the_last_one_serving(models: Models) -> None:
    from ray import serve

    from serve.models import ML_APP, XGB_DEPLOYMENT
    reg = Registry(models.root)
    before = _post(models.api.url + "/ml/v1/predict", {"features": models.rows[:2].tolist()}, models.key)[1]
    broken = reg.register("xgb", "xgboost", files={"model.ubj": b"not a booster"}, features=FEATURES)
    reg.promote("xgb", broken.version)
    handle = serve.get_deployment_handle(XGB_DEPLOYMENT, app_name=ML_APP)
    info = _until(lambda: (i := handle.info.remote().result())["last_error"] and i)
    assert info and info["version"] == before["item"]["version"], info
    status, body = _post(models.api.url + "/ml/v1/predict", {"features": models.rows[:2].tolist()}, models.key)
    assert status == 200 and body["item"] == before["item"], body
    status, body = _post(models.api.url + "/ml/v1/predict", {"features": models.rows[:2].tolist(),
                                                             "version": broken.version}, models.key)
    assert status >= 400 and set(body) == {"error"}, body
