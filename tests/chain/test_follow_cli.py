"""``crypto-intel chain follow`` on Ray (wallet shard actors) against the local node, with Postgres and
Redis: transfers and alerts of the canonical chain stored, alerts on the live feed."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.chain.node import LocalNode
from tests.storage.pg_fixtures import fetch, pg_db, pg_url  # noqa: F401 - fixtures
from tests.storage.redis_fixtures import redis_url  # noqa: F401 - fixture

ETH = 10**18


@pytest.mark.slow
@pytest.mark.ray
def test_follow_cli_on_ray_stores_and_publishes(chain_node: LocalNode, pg_db: str, redis_url: str,  # noqa: F811
                                               tmp_path: Path) -> None:
    node = chain_node
    acc = node.accounts
    start = node.head() + 1
    for i in range(3):
        node.send_eth(acc[1], acc[2 + i], (i + 1) * ETH)
    fork = node.snapshot()
    node.send_eth(acc[3], acc[4], 5 * ETH)  # orphaned below
    node.fork_and_replace(fork, lambda n: n.send_eth(n.accounts[4], n.accounts[5], 2 * ETH), extra_blocks=2)
    head = node.head()
    namespace = f"test-chain-{secrets.token_hex(4)}"
    env = {**os.environ, "DATABASE_URL": pg_db, "REDIS_URL": redis_url, "CRYPTO_INTEL_REDIS_NAMESPACE": namespace}
    # the follower runs from before the fork; the reorg already happened, so it sees only the final chain;
    # a second run over a live reorg is covered in test_follow_node.py
    proc = subprocess.run([sys.executable, "-m", "app.cli", "chain", "follow", "--rpc", node.http_url,
                           "--ws", node.ws_url, "--from-block", str(start), "--to-block", str(head),
                           "--chain-name", "hardhat", "--native-usd", "2000", "--whale-usd", "1000", "--shards", "2",
                           "--out-dir", str(tmp_path), "--poll-s", "0.2", "--status-s", "1"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads((tmp_path / "chain-status.json").read_text())
    assert status["blocks"] == head - start + 1 and status["rejected"] == 0
    alerts = [json.loads(line) for line in (tmp_path / "chain-alerts.jsonl").read_text().splitlines()]
    whales = [a for a in alerts if a["kind"] == "whale_transfer"]
    assert len(whales) == 4  # 1, 2 and 3 ETH, and the replacement chain's 2 ETH (the orphaned 5 ETH never seen)
    rows = asyncio.run(fetch(pg_db, "SELECT count(*) AS n FROM token_transfers WHERE chain = 'hardhat'"))
    assert rows[0]["n"] == 4
    wallets = asyncio.run(fetch(pg_db, "SELECT address FROM wallets WHERE chain = 'hardhat'"))
    assert {r["address"] for r in wallets} == {a.lower() for a in (acc[1], acc[2], acc[3], acc[4], acc[5])}
    stored = asyncio.run(fetch(pg_db, "SELECT kind FROM alerts WHERE chain = 'hardhat'"))
    assert sorted(r["kind"] for r in stored) == sorted(a["kind"] for a in alerts), (stored, alerts)
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.xlen(f"{namespace}:v1:feed:alerts") == len(alerts)
    finally:
        for key in client.scan_iter(f"{namespace}:*"):
            client.delete(key)
