"""/ml/v1/anomaly/detect and /ml/v1/patterns/wallet/{address} over real HTTP, Postgres and Redis, on the
bundled sample's stored candles and real mainnet transfers (ethereum-etl's test_stream blocks), plus the
pure scoring functions they call."""

from __future__ import annotations

import asyncio
import json
import secrets

import numpy as np
import pytest

from engine.anomaly import detect, isolation, robust_z
from engine.wallet_patterns import wallet_profile
from tests.data_paths import DATA_ROOT
from tests.serve.api_fixtures import RunningApi
from tests.serve.models_artefacts import feature_rows
from tests.serve.test_models import _post, _user

STREAM = DATA_ROOT / "chain" / "test_stream" / "blocks_1755634_1755635"


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (STREAM / name).read_text().splitlines() if line.strip()]


def test_scores_flag_a_planted_outlier_in_real_rows() -> None:
    X, _ = feature_rows()
    X = X[-600:].astype(np.float64).copy()
    X[123] = np.nanmax(np.abs(X), axis=0) * 6
    out = detect(X)
    assert 123 in out.anomalous
    assert out.robust_z[123] == out.robust_z.max() and out.isolation[123] == out.isolation.max()
    assert out.isolation[123] > 0.7 and np.median(out.isolation) < 0.5
    np.testing.assert_array_equal(isolation(X, seed=3), isolation(X, seed=3))  # seeded: repeatable
    z = robust_z(np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [np.nan, 5.0]]))
    assert np.isfinite(z).all() and (z[:, 1] == 0).all()  # missing -> median, constant column -> 0


def test_wallet_profile_of_real_transfers() -> None:
    txs = _jsonl("expected_transactions.json")
    rows = [{"from_address": t["from_address"], "to_address": t["to_address"], "token_address": "",
             "value": int(t["value"]), "block_ts": t["block_timestamp"] * 10**9, "block_number": t["block_number"],
             "log_index": -1, "tx_hash": t["hash"], "block_hash": t["block_hash"]} for t in txs]
    me = txs[0]["to_address"]
    out = wallet_profile(me.upper().replace("0X", "0x"), rows, labels=["user:watch"])
    assert out["address"] == me and out["labels"] == ["user:watch"]
    p = out["profile"]
    assert p["transfers"] == sum(me in (t["from_address"], t["to_address"]) for t in txs)
    assert p["incoming"] + p["outgoing"] == p["transfers"] and p["first_ts"] == txs[0]["block_timestamp"] * 10**9
    assert out["cluster"]["id"] and out["cluster"]["size"] >= 1 and set(out["behaviour"]) <= set(out["rules"])


@pytest.fixture(scope="module")
def chain_wallet(running_api: RunningApi) -> tuple[str, str]:
    """The real test_stream blocks' transactions and token transfer stored as the chain follower stores them."""
    from connectors.storage.chain_store import ChainStore
    from schemas.records import ChainBlock, ValueTransfer
    blocks = {b["number"]: b for b in _jsonl("expected_blocks.json")}
    by_block: dict[int, list] = {}
    for t in _jsonl("expected_transactions.json"):
        by_block.setdefault(t["block_number"], []).append(
            ValueTransfer(t["hash"], -1, "", t["from_address"], t["to_address"], int(t["value"])))
    for t in _jsonl("expected_token_transfers.json"):
        by_block.setdefault(t["block_number"], []).append(
            ValueTransfer(t["transaction_hash"], t["log_index"], t["token_address"], t["from_address"],
                          t["to_address"], int(t["value"])))
    chain = f"testchain-{secrets.token_hex(3)}"

    async def store() -> None:
        cs = await ChainStore(running_api.database_url).start()
        try:
            for number in sorted(by_block):
                b = blocks[number]
                header = ChainBlock(chain_id=1, number=number, hash=b["hash"], parent_hash=b["parent_hash"],
                                    timestamp=b["timestamp"], transaction_count=b["transaction_count"])
                await cs.block(chain, header, by_block[number], [])
        finally:
            await cs.close()
    asyncio.run(store())
    return chain, _jsonl("expected_token_transfers.json")[0]["to_address"]


@pytest.fixture(scope="module")
def key(running_api: RunningApi) -> str:
    return asyncio.run(_user(running_api.database_url, "enterprise"))


def test_anomaly_detect_on_rows_market_and_wallet(running_api: RunningApi, key: str, chain_wallet) -> None:
    url = running_api.url + "/ml/v1/anomaly/detect"
    X, _ = feature_rows()
    rows = np.nan_to_num(X[-300:]).astype(np.float64)
    rows[42] = np.abs(rows).max(axis=0) * 8
    status, body = _post(url, {"rows": rows.tolist()}, key)
    assert status == 200, body
    item = body["item"]
    assert item["source"] == "rows" and item["rows"] == 300 and 42 in item["anomalous"]
    assert len(item["robust_z"]) == len(item["isolation"]) == 300
    status, body = _post(url, {"market": running_api.markets[0], "timeframe": "5m", "limit": 200}, key)
    assert status == 200, body
    item = body["item"]
    assert item["source"] == "market" and item["rows"] == len(item["ts"]) >= 50
    assert item["columns"] == ["log_return", "log_range", "log_volume"] and item["ts"] == sorted(item["ts"])
    chain, _ = chain_wallet
    wallet = _jsonl("expected_transactions.json")[0]["to_address"]
    status, body = _post(url, {"wallet": wallet, "chain": chain}, key)
    assert status in (200, 404), body  # the stored sample holds only a few transfers per wallet
    for bad in ({"rows": rows.tolist(), "market": "X"}, {"rows": [[1.0, 2.0], [1.0]]}, {"rows": [[1.0]]},
                {"rows": [[1.0]] * 3, "z_threshold": -1}):
        status, body = _post(url, bad, key)
        assert status == 422 and set(body) == {"error"}, (bad, body)
    status, body = _post(url, {"market": "TEST:NONE"}, key)
    assert status == 404 and body["error"]["code"] == "not_found", body


def test_wallet_patterns_from_stored_transfers(running_api: RunningApi, key: str, chain_wallet) -> None:
    import urllib.request
    chain, wallet = chain_wallet

    def get(address: str) -> tuple[int, dict]:
        req = urllib.request.Request(f"{running_api.url}/ml/v1/patterns/wallet/{address}?chain={chain}",
                                     headers={"X-API-Key": key})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)
    status, body = get(wallet)
    assert status == 200, body
    item = body["item"]
    assert item["address"] == wallet and item["chain"] == chain
    assert item["profile"]["transfers"] >= 1 and item["profile"]["incoming"] >= 1
    assert item["cluster"]["size"] >= 1 and isinstance(item["labels"], list) and "behaviour" in item
    assert item["first_seen"] is not None
    token = _jsonl("expected_token_transfers.json")[0]
    assert item["profile"]["per_token"][token["token_address"]]["in"] == str(token["value"])
    status, body = get("0x" + "00" * 19 + "01")
    assert status == 404 and body["error"]["code"] == "not_found", body
    req = urllib.request.Request(f"{running_api.url}/ml/v1/patterns/wallet/{wallet}?chain={chain}")
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("no key must be refused")
    except urllib.error.HTTPError as e:
        assert e.code == 401
