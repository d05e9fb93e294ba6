"""On-chain swaps become market data: ``chain follow`` on Ray prices each Uniswap-V2-style swap of the
local node's pair, and once its block is confirmed the trade enters the market pipeline, which builds
candles from it like exchange trades."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chain.node import LocalNode

ETH = 10**18


def amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    fee_in = amount_in * 997  # Uniswap V2's 0.3% fee
    return fee_in * reserve_out // (reserve_in * 1000 + fee_in)


@pytest.mark.slow
@pytest.mark.ray
def test_confirmed_swaps_feed_candles(chain_node: LocalNode, tmp_path: Path) -> None:
    node = chain_node
    lp, trader = node.accounts[1], node.accounts[2]
    a = node.deploy("TestToken", "Wrapped Ether", "WETH", 18)
    b = node.deploy("TestToken", "Dollar", "USD", 18)
    pair = node.deploy("TestPair", a.address, b.address)
    t0 = node.contract_at("TestToken", pair.functions.token0().call())
    t1 = node.contract_at("TestToken", pair.functions.token1().call())
    node.transact(t0, "mint", pair.address, 1_000 * ETH)
    node.transact(t1, "mint", pair.address, 3_000_000 * ETH)
    node.transact(pair, "mint", lp)
    node.transact(t0, "mint", trader, 1_000 * ETH)
    node.transact(t1, "mint", trader, 10_000_000 * ETH)
    start = node.head() + 1
    ts = int(node.block("latest")["timestamp"], 16)
    swaps = 24
    for i in range(swaps):
        r0, r1, _ = pair.functions.getReserves().call()
        ts += 20  # a swap every 20 s of block time: several 1-minute candles
        node.rpc("evm_setNextBlockTimestamp", hex(ts))
        if i % 2 == 0:  # sell token0 into the pool
            amount = (i + 1) * ETH // 2
            node.transact(t0, "transfer", pair.address, amount, sender=trader)
            node.rpc("evm_setNextBlockTimestamp", hex(ts + 1))
            node.transact(pair, "swap", 0, amount_out(amount, r0, r1), trader, b"", sender=trader)
        else:  # buy token0 with token1
            amount = (i + 1) * 1_500 * ETH
            node.transact(t1, "transfer", pair.address, amount, sender=trader)
            node.rpc("evm_setNextBlockTimestamp", hex(ts + 1))
            node.transact(pair, "swap", amount_out(amount, r1, r0), 0, trader, b"", sender=trader)
        ts += 1
    head = node.head()
    confirmations = 2
    proc = subprocess.run([sys.executable, "-m", "app.cli", "chain", "follow", "--rpc", node.http_url,
                           "--from-block", str(start), "--to-block", str(head), "--chain-name", "hardhat",
                           "--confirmations", str(confirmations), "--out-dir", str(tmp_path), "--poll-s", "0.2",
                           "--status-s", "1", "--timeframes", "1m"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads((tmp_path / "chain-status.json").read_text())
    trades = [json.loads(line) for line in (tmp_path / "chain-trades.jsonl").read_text().splitlines()]
    # only confirmed blocks' swaps reach the market pipeline: the last swap's block is not yet confirmed
    assert swaps - 1 <= len(trades) < swaps + 1 and status["markets"]["trades"] == len(trades)
    s0, s1 = t0.functions.symbol().call(), t1.functions.symbol().call()
    assert {t["market"] for t in trades} == {f"UNIV2:{s0}{s1}".upper()}
    assert [t["side"] for t in trades[:4]] == ["sell", "buy", "sell", "buy"]
    assert all(t["price"] > 0 for t in trades)
    assert status["markets"]["candles"] >= 3, status
