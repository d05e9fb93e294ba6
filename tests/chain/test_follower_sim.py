"""Reorg handling of the follower over an in-memory chain: after reorgs of any depth within the
window, wallets, stored transfers and live alerts equal a fresh run over the final canonical chain,
and every orphaned block's alerts were retracted. A reorg deeper than the window is reported."""

from __future__ import annotations

import asyncio

import pytest

from connectors.chain.follower import ChainFollower, FollowerConfig
from engine.chain.state import ChainState
from engine.wallets.book import Thresholds
from tests.chain.sim_chain import SimChain

WALLETS = [f"0x{i:040x}" for i in range(1, 9)]
PRICES = {"": (2000.0, 18)}  # native coin: USD 2,000, 18 decimals
LOW = Thresholds(whale_usd=1_000_000.0, unusual_min_history=3, unusual_z=3.0)


def fresh_state() -> ChainState:
    return ChainState("sim", shards=3, prices=PRICES, thresholds=LOW)


async def follow_to_head(chain: SimChain, follower: ChainFollower) -> None:
    await follower.run(until_block=await chain.block_number())


async def fresh_run(chain: SimChain) -> ChainState:
    state = fresh_state()
    await follow_to_head(chain, ChainFollower(chain, state, from_block=1, config=FollowerConfig(poll_s=0.01)))
    return state


@pytest.mark.parametrize("depth", [1, 3, 12])
@pytest.mark.asyncio(loop_scope="session")
async def test_reorg_then_state_equals_fresh_run_over_final_chain(depth: int) -> None:
    chain = SimChain(WALLETS, seed=depth)
    chain.mine(30, txs_per_block=4)
    state = fresh_state()
    follower = ChainFollower(chain, state, from_block=1, config=FollowerConfig(poll_s=0.01, confirmations=5))
    await follow_to_head(chain, follower)
    before = {a.id for a in state.live_alerts()}
    orphaned = set(chain.reorg(depth, extra=2))
    chain.mine(3)
    await follow_to_head(chain, follower)
    assert follower.stats["reorgs"] == 1 and follower.stats["orphaned"] == depth
    fresh = await fresh_run(chain)
    assert state.wallets() == fresh.wallets()
    assert state.stored_transfers() == fresh.stored_transfers()
    assert [a.id for a in state.live_alerts()] == [a.id for a in fresh.live_alerts()]
    retracted = [a for a in state.alerts if a.retracted]
    assert {a.block_hash for a in retracted} <= orphaned
    orphaned_alerts = {a.id for a in state.alerts if a.block_hash in orphaned and not a.retracted}
    assert orphaned_alerts and orphaned_alerts == {a.id for a in retracted}  # every one of them retracted
    assert before - {a.id for a in state.live_alerts()} == orphaned_alerts
    # block numbers: 1..30 once, then the fork point + 1 .. head again
    top = await chain.block_number()
    assert follower.processed == list(range(1, 31)) + list(range(31 - depth, top + 1))


@pytest.mark.asyncio(loop_scope="session")
async def test_several_reorgs_in_a_row_and_confirmations() -> None:
    chain = SimChain(WALLETS, seed=7)
    chain.mine(20)
    state = fresh_state()
    follower = ChainFollower(chain, state, from_block=1, config=FollowerConfig(poll_s=0.01, confirmations=4))
    for depth in (2, 1, 5, 3):
        await follow_to_head(chain, follower)
        chain.reorg(depth)
        chain.mine(2)
    await follow_to_head(chain, follower)
    fresh = await fresh_run(chain)
    assert state.wallets() == fresh.wallets()
    assert [a.id for a in state.live_alerts()] == [a.id for a in fresh.live_alerts()]
    assert follower.stats["reorgs"] == 4
    assert state.confirmed_through == await chain.block_number() - 4


@pytest.mark.asyncio(loop_scope="session")
async def test_reorg_deeper_than_the_window_is_reported_and_handled() -> None:
    chain = SimChain(WALLETS, seed=3)
    chain.mine(40)
    state = fresh_state()
    follower = ChainFollower(chain, state, from_block=1,
                             config=FollowerConfig(poll_s=0.01, window=8, confirmations=4))
    await follow_to_head(chain, follower)
    chain.reorg(10, extra=1)  # deeper than the 8-block window
    await follow_to_head(chain, follower)
    assert follower.stats["deep_reorgs"] == 1
    # policy: everything held (the window) is retracted and rebuilt from the new chain; older blocks,
    # beyond the window, were confirmed and stay as they were
    assert follower.processed[-1] == await chain.block_number()
    assert sorted(state.blocks)[-1] == await chain.block_number()
    assert all(state.blocks[n] == chain.blocks[n]["hash"] for n in state.blocks if n > 40 - 8)


class FlakyChain(SimChain):
    """Answers some calls with malformed data: missing fields, wrong types, truncated objects, huge numbers."""

    def __init__(self, *a, bad_every: int = 3, **kw) -> None:
        super().__init__(*a, **kw)
        self.calls = 0
        self.bad_every = bad_every
        self.served_bad = 0

    async def get_block(self, number: int, full_tx: bool = True) -> dict:
        block = await super().get_block(number, full_tx)
        self.calls += 1
        if self.calls % self.bad_every:
            return block
        self.served_bad += 1
        kind = self.served_bad % 5
        if kind == 0:
            return {k: v for k, v in block.items() if k != "hash"}  # missing field
        if kind == 1:
            return {**block, "number": int(block["number"], 16)}  # a JSON number where hex is expected
        if kind == 2:
            return {**block, "timestamp": "0x" + "f" * 80}  # a number far beyond 256 bits
        if kind == 3:
            return {**block, "transactions": [{"hash": "0x12"}]}  # truncated transaction object
        return {**block, "parentHash": None}


@pytest.mark.asyncio(loop_scope="session")
async def test_malformed_responses_are_rejected_counted_and_the_follower_keeps_going() -> None:
    chain = FlakyChain(WALLETS, seed=11, bad_every=3)
    chain.mine(25)
    state = fresh_state()
    follower = ChainFollower(chain, state, from_block=1, config=FollowerConfig(poll_s=0.01))
    await asyncio.wait_for(follow_to_head(chain, follower), 30)
    assert chain.served_bad >= 5 and follower.stats["rejected"] == chain.served_bad
    assert "ChainDataError" in follower.last_error
    assert follower.processed == list(range(1, 26))  # every block once, despite the bad answers
    good = SimChain(WALLETS, seed=11)
    good.blocks = chain.blocks
    fresh = await fresh_run(good)
    assert state.wallets() == fresh.wallets()
