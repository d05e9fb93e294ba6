"""Whale alerts valued with CoinGecko prices (a local server in CoinGecko's format) while following."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from app.chain_follow import follow
from app.cli import build_parser
from tests.chain.node import LocalNode
from tests.refdata.fake_api import FakeApi, fixture, ok

ETH = 10**18


@pytest.mark.asyncio(loop_scope="session")
async def test_coingecko_prices_value_transfers_for_whale_alerts(chain_node: LocalNode, tmp_path: Path) -> None:
    node = chain_node
    start = node.head() + 1
    await asyncio.to_thread(node.send_eth, node.accounts[1], node.accounts[2], 1 * ETH)  # 3,442.71 USD
    await asyncio.to_thread(node.send_eth, node.accounts[2], node.accounts[3], ETH // 2)  # 1,721 USD
    head = node.head()
    async with FakeApi() as api:
        api.on("/api/v3/simple/price", ok(fixture("coingecko_simple_price.json")))
        args = build_parser().parse_args([
            "chain", "follow", "--rpc", node.http_url, "--from-block", str(start), "--to-block", str(head),
            "--in-process", "--whale-usd", "3000", "--price-source", "coingecko",
            "--coingecko-url", f"{api.url}/api/v3", "--out-dir", str(tmp_path), "--poll-s", "0.1",
            "--status-s", "1", "--no-markets", "--chain-name", "hardhat"])
        status = await follow(args)
        assert api.calls_to("/api/v3/simple/price") and api.calls_to("/api/v3/simple/price")[0].query["ids"] == "ethereum"
    assert status["blocks"] == head - start + 1
    alerts = [json.loads(line) for line in (tmp_path / "chain-alerts.jsonl").read_text().splitlines()]
    whales = [a for a in alerts if a["kind"] == "whale_transfer"]
    assert len(whales) == 1 and whales[0]["amount"] == str(ETH)
    assert whales[0]["usd"] == pytest.approx(3442.71)
