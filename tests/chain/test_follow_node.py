"""The chain follower against a real local Ethereum node (Hardhat): reorgs of depth 1, 3 and 12 during
a live follow end in the same wallets, stored transfers and alerts as a fresh run over the final
chain, with retractions for the orphaned blocks; a dropped newHeads WebSocket is reconnected and
caught up by block number with no block missed or processed twice; swaps on a Uniswap-V2-style pair
become trade ticks."""

from __future__ import annotations

import asyncio

import pytest

from connectors.chain.follower import ChainFollower, FollowerConfig
from connectors.chain.rpc import RpcClient
from engine.chain.state import ChainState
from engine.wallets.book import Thresholds
from tests.chain.node import LocalNode

ETH = 10**18
POLL = FollowerConfig(poll_s=0.1, confirmations=4, backoff_initial_s=0.05, backoff_max_s=0.2)


def new_state(token: str) -> ChainState:
    # native coin at 2,000 USD and the test token at 1 USD: whale alerts from 100 USD
    return ChainState("hardhat", shards=3, prices={"": (2000.0, 18), token.lower(): (1.0, 18)},
                      thresholds=Thresholds(whale_usd=100.0, unusual_min_history=3, unusual_z=3.0))


async def until(predicate, timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


async def activity(node: LocalNode, token, blocks: int, salt: int) -> None:
    """``blocks`` blocks of ETH and token transfers between the node's accounts (one tx per block)."""
    acc = node.accounts
    for i in range(blocks):
        a, b = acc[1 + (i + salt) % 5], acc[1 + (i + salt + 1) % 5]
        if i % 2:
            await asyncio.to_thread(node.send_eth, a, b, (i + 1 + salt) * ETH // 10)
        else:
            await asyncio.to_thread(node.transact, token, "transfer", b, (i + 1 + salt) * 1_000 * ETH, sender=a)


async def fresh_run(node: LocalNode, token, start: int, head: int) -> ChainState:
    state = new_state(token.address)
    async with RpcClient(node.http_url) as rpc:
        await ChainFollower(rpc, state, from_block=start, config=POLL).run(until_block=head)
    return state


@pytest.mark.parametrize("depth", [1, 3, 12])
@pytest.mark.asyncio(loop_scope="session")
async def test_reorg_during_live_follow_equals_fresh_run(chain_node: LocalNode, depth: int) -> None:
    chain = chain_node
    token = await asyncio.to_thread(chain.deploy, "TestToken", "Test", "TT", 18)
    for a in chain.accounts[1:6]:
        await asyncio.to_thread(chain.transact, token, "mint", a, 1_000_000 * ETH)
    start = chain.head() + 1
    state = new_state(token.address)
    async with RpcClient(chain.http_url) as rpc:
        follower = ChainFollower(rpc, state, from_block=start, ws_url=chain.ws_url, config=POLL)
        task = asyncio.ensure_future(follower.run())
        try:
            await activity(chain, token, 4, salt=0)
            fork = await asyncio.to_thread(chain.snapshot)
            await activity(chain, token, depth, salt=1)  # these blocks will be orphaned
            head = chain.head()
            await until(lambda: follower.next > head)
            live_before = {a.id for a in state.live_alerts()}
            reorg = await asyncio.to_thread(
                chain.fork_and_replace, fork, lambda n: n.send_eth(n.accounts[2], n.accounts[4], 3 * ETH), 2)
            assert reorg.depth == depth
            await activity(chain, token, 2, salt=3)
            final = chain.head()
            await until(lambda: follower.next > final)
        finally:
            follower.stop()
            await task
    assert follower.stats["reorgs"] >= 1 and follower.stats["orphaned"] >= depth
    fresh = await fresh_run(chain, token, start, final)
    assert state.wallets() == fresh.wallets()
    assert state.stored_transfers() == fresh.stored_transfers()
    assert [a.id for a in state.live_alerts()] == [a.id for a in fresh.live_alerts()]
    orphaned = set(reorg.old_hashes.values()) if hasattr(reorg, "old_hashes") else set(reorg.old.values())
    retracted = [a for a in state.alerts if a.retracted]
    assert retracted and {a.block_hash for a in retracted} <= orphaned
    assert {a.id for a in retracted} == live_before - {a.id for a in state.live_alerts()}


@pytest.mark.asyncio(loop_scope="session")
async def test_dropped_websocket_reconnects_and_no_block_is_missed_or_repeated(chain_node: LocalNode) -> None:
    chain = chain_node
    start = chain.head() + 1
    state = ChainState("hardhat", shards=2)
    config = FollowerConfig(poll_s=5.0, backoff_initial_s=0.05, backoff_max_s=0.2)  # slow polling: heads drive it
    async with RpcClient(chain.http_url) as rpc:
        follower = ChainFollower(rpc, state, from_block=start, ws_url=chain.proxied_ws_url, config=config)
        task = asyncio.ensure_future(follower.run())
        try:
            await until(lambda: follower.stats["heads"] >= 0 and chain.proxy_connections >= 1)
            for _ in range(5):
                await asyncio.to_thread(chain.mine, 1)
            await until(lambda: follower.next > chain.head())
            chain.drop_websockets(refuse_new=True)  # the node's subscription is gone mid-run
            for _ in range(6):
                await asyncio.to_thread(chain.mine, 1)  # mined while the socket is down
            chain.accept_websockets()
            await until(lambda: follower.stats["reconnects"] >= 1, 30)
            for _ in range(3):
                await asyncio.to_thread(chain.mine, 1)
            head = chain.head()
            await until(lambda: follower.next > head, 30)
        finally:
            follower.stop()
            await task
    assert follower.processed == list(range(start, head + 1))  # each block once, none skipped
    assert chain.proxy_connections >= 2 and follower.stats["heads"] > 0


@pytest.mark.asyncio(loop_scope="session")
async def test_pair_swaps_become_trade_ticks(chain_node: LocalNode) -> None:
    chain = chain_node
    a = await asyncio.to_thread(chain.deploy, "TestToken", "Wrapped Ether", "WETH", 18)
    b = await asyncio.to_thread(chain.deploy, "TestToken", "USD Coin", "USDC", 6)
    pair = await asyncio.to_thread(chain.deploy, "TestPair", a.address, b.address)
    t0 = chain.contract_at("TestToken", pair.functions.token0().call())
    t1 = chain.contract_at("TestToken", pair.functions.token1().call())
    d0, d1 = t0.functions.decimals().call(), t1.functions.decimals().call()
    lp, trader = chain.accounts[1], chain.accounts[2]
    await asyncio.to_thread(chain.transact, t0, "mint", pair.address, 100 * 10**d0)
    await asyncio.to_thread(chain.transact, t1, "mint", pair.address, 300_000 * 10**d1)
    await asyncio.to_thread(chain.transact, pair, "mint", lp)
    start = chain.head() + 1
    await asyncio.to_thread(chain.transact, t0, "mint", trader, 10**d0)
    await asyncio.to_thread(chain.transact, t0, "transfer", pair.address, 10**d0, sender=trader)  # 1 token0 in
    out = 2_900 * 10**d1
    await asyncio.to_thread(chain.transact, pair, "swap", 0, out, trader, b"", sender=trader)
    state = ChainState("hardhat", shards=1)
    async with RpcClient(chain.http_url) as rpc:
        await ChainFollower(rpc, state, from_block=start, config=POLL).run(until_block=chain.head())
    trades = [t for ts in state.trades.values() for t in ts]
    assert len(trades) == 1
    t = trades[0]
    s0, s1 = t0.functions.symbol().call(), t1.functions.symbol().call()
    assert t.market == f"UNIV2:{s0}{s1}".upper() and t.side == "sell"  # token0 paid into the pool
    assert t.size == 1.0 and t.price == pytest.approx(out / 10**d1)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_reverted_transaction_moves_no_value(chain_node: LocalNode) -> None:
    chain = chain_node
    token = await asyncio.to_thread(chain.deploy, "TestToken", "Test", "TT", 18)
    start = chain.head() + 1
    sender = chain.accounts[3]
    try:  # the token has no payable fallback: the transaction is mined and reverts
        await asyncio.to_thread(chain.w3.eth.send_transaction,
                                {"from": sender, "to": token.address, "value": 5 * ETH, "gas": 100_000})
    except Exception:
        pass  # Hardhat reports the revert to the sender; the block is mined all the same
    await asyncio.to_thread(chain.send_eth, sender, chain.accounts[4], 2 * ETH)
    head = chain.head()
    assert head >= start + 1
    state = ChainState("hardhat", shards=1)
    async with RpcClient(chain.http_url) as rpc:
        await ChainFollower(rpc, state, from_block=start, config=POLL).run(until_block=head)
    moved = [t.value for t in state.stored_transfers() if t.token == ""]
    assert moved == [2 * ETH]
