"""The local Hardhat node works: contracts and their events, newHeads over WebSocket, reorgs, WS cuts."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from web3 import AsyncWeb3, WebSocketProvider
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from tests.chain.node import LocalNode, NodeError

# topics as published by mainnet contracts: our test contracts must produce exactly these
TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
APPROVAL = "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"
V2_SWAP = "0xd78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822"
V2_SYNC = "0x1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1"
V2_MINT = "0x4c209b5fc8ad50758f13e2e1088ba56a560dff690a1c6fef26394f4c03821c4f"
WETH_DEPOSIT = "0xe1fffcc4923d04b559f4d29a8bfc6cda04eb5b0d3c460751c2402c5c5cc9109c"
WETH_WITHDRAWAL = "0x7fcf532c15f0a6db0bd6d0e038bea71d30d808c7d98cb3bf7268a95bf5081b65"
ETH = 10**18


def topic0(log: dict) -> str:
    return "0x" + bytes(log["topics"][0]).hex()


def amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """Uniswap V2 getAmountOut (0.3% fee)."""
    return amount_in * 997 * reserve_out // (reserve_in * 1000 + amount_in * 997)


def test_token_mint_transfer_approve(chain_node: LocalNode) -> None:
    alice, bob, carol = chain_node.accounts[1:4]
    token = chain_node.deploy("TestToken", "Test Token", "TT", 6)
    assert (token.functions.symbol().call(), token.functions.decimals().call()) == ("TT", 6)

    minted = chain_node.transact(token, "mint", alice, 1_000)
    sent = chain_node.transact(token, "transfer", bob, 250, sender=alice)

    assert [topic0(log) for log in minted["logs"] + sent["logs"]] == [TRANSFER, TRANSFER]
    (mint_ev,) = token.events.Transfer().process_receipt(minted)
    assert dict(mint_ev["args"]) == {"from": "0x" + "00" * 20, "to": alice, "value": 1_000}
    log = sent["logs"][0]
    assert log["address"] == token.address
    # indexed from/to are left-padded addresses in topics 1 and 2; the value is the data word
    assert bytes(log["topics"][1])[-20:].hex() == alice[2:].lower()
    assert bytes(log["topics"][2])[-20:].hex() == bob[2:].lower()
    assert int.from_bytes(bytes(log["data"]), "big") == 250

    approved = chain_node.transact(token, "approve", bob, 100, sender=alice)
    assert topic0(approved["logs"][0]) == APPROVAL
    moved = chain_node.transact(token, "transferFrom", alice, carol, 60, sender=bob)
    (ev,) = token.events.Transfer().process_receipt(moved)
    assert (ev["args"]["from"], ev["args"]["to"], ev["args"]["value"]) == (alice, carol, 60)
    assert token.functions.allowance(alice, bob).call() == 40
    assert [token.functions.balanceOf(a).call() for a in (alice, bob, carol)] == [690, 250, 60]


def test_pair_mint_and_swap_emit_uniswap_v2_events(chain_node: LocalNode) -> None:
    lp, trader = chain_node.accounts[1:3]
    a = chain_node.deploy("TestToken", "Token A", "TKA", 18)
    b = chain_node.deploy("TestToken", "Token B", "TKB", 18)
    pair = chain_node.deploy("TestPair", a.address, b.address)
    t0 = chain_node.contract_at("TestToken", pair.functions.token0().call())
    t1 = chain_node.contract_at("TestToken", pair.functions.token1().call())
    assert int(t0.address, 16) < int(t1.address, 16)  # sorted like the V2 factory

    chain_node.transact(t0, "mint", pair.address, 1_000 * ETH)
    chain_node.transact(t1, "mint", pair.address, 4_000 * ETH)
    added = chain_node.transact(pair, "mint", lp)
    assert [topic0(log) for log in added["logs"]] == [TRANSFER, TRANSFER, V2_SYNC, V2_MINT]
    r0, r1, _ = pair.functions.getReserves().call()
    assert (r0, r1) == (1_000 * ETH, 4_000 * ETH)

    # swap 10 token0 in for token1 out, as a router would: transfer in first, then call swap
    amount_in = 10 * ETH
    out = amount_out(amount_in, r0, r1)
    chain_node.transact(t0, "mint", trader, amount_in)
    chain_node.transact(t0, "transfer", pair.address, amount_in, sender=trader)
    with pytest.raises(ContractLogicError, match="UniswapV2: K"):
        chain_node.transact(pair, "swap", 0, out + 1, trader, b"", sender=trader)
    swapped = chain_node.transact(pair, "swap", 0, out, trader, b"", sender=trader)

    assert [topic0(log) for log in swapped["logs"]] == [TRANSFER, V2_SYNC, V2_SWAP]
    (swap,) = pair.events.Swap().process_receipt(swapped, errors=DISCARD)
    assert dict(swap["args"]) == {
        "sender": trader, "amount0In": amount_in, "amount1In": 0, "amount0Out": 0, "amount1Out": out, "to": trader,
    }
    (sync,) = pair.events.Sync().process_receipt(swapped, errors=DISCARD)
    assert (sync["args"]["reserve0"], sync["args"]["reserve1"]) == (r0 + amount_in, r1 - out)
    assert t1.functions.balanceOf(trader).call() == out

    # tokens sent without a swap are absorbed by sync()
    chain_node.transact(t1, "mint", pair.address, 5)
    synced = chain_node.transact(pair, "sync")
    (sync,) = pair.events.Sync().process_receipt(synced)
    assert sync["args"]["reserve1"] == r1 - out + 5


def test_weth_deposit_withdraw_transfer(chain_node: LocalNode) -> None:
    user, other = chain_node.accounts[1:3]
    weth = chain_node.deploy("TestWETH")
    deposited = chain_node.transact(weth, "deposit", sender=user, value=2 * ETH)
    withdrawn = chain_node.transact(weth, "withdraw", ETH // 2, sender=user)
    moved = chain_node.transact(weth, "transfer", other, ETH // 4, sender=user)

    # like WETH9: no Transfer on deposit/withdraw
    assert [topic0(log) for log in deposited["logs"]] == [WETH_DEPOSIT]
    assert [topic0(log) for log in withdrawn["logs"]] == [WETH_WITHDRAWAL]
    assert [topic0(log) for log in moved["logs"]] == [TRANSFER]
    assert dict(weth.events.Deposit().process_receipt(deposited)[0]["args"]) == {"dst": user, "wad": 2 * ETH}
    assert dict(weth.events.Withdrawal().process_receipt(withdrawn)[0]["args"]) == {"src": user, "wad": ETH // 2}
    assert weth.functions.balanceOf(user).call() == 2 * ETH - ETH // 2 - ETH // 4
    assert chain_node.w3.eth.get_balance(weth.address) == 2 * ETH - ETH // 2


async def test_new_heads_over_websocket(chain_node: LocalNode) -> None:
    async with AsyncWeb3(WebSocketProvider(chain_node.ws_url)) as w3:
        assert await w3.eth.chain_id == 31337
        await w3.eth.subscribe("newHeads")
        first = chain_node.mine(2) - 1
        seen = []
        async with asyncio.timeout(5):
            async for msg in w3.socket.process_subscriptions():
                seen.append(msg["result"])
                if len(seen) == 2:
                    break
    assert [h["number"] for h in seen] == [first, first + 1]
    assert ["0x" + bytes(h["hash"]).hex() for h in seen] == [chain_node.block_hash(n) for n in (first, first + 1)]
    assert seen[1]["parentHash"] == seen[0]["hash"]


def test_reorg_depth_3(chain_node: LocalNode) -> None:
    alice, bob, carol = chain_node.accounts[1:4]
    token = chain_node.deploy("TestToken", "Test", "TT", 18)
    chain_node.transact(token, "mint", alice, 100)
    base = chain_node.snapshot()
    fork = chain_node.head()
    fork_hash = chain_node.block_hash(fork)
    old_tx = chain_node.transact(token, "transfer", bob, 5, sender=alice)["transactionHash"]
    chain_node.mine(2)

    r = chain_node.reorg(3, lambda n: n.transact(token, "transfer", carol, 7, sender=alice))

    assert (r.fork_number, r.depth, r.old_head, r.new_head) == (fork, 3, fork + 3, fork + 4)
    assert chain_node.head() == fork + 4 and chain_node.rpc("evm_revert", base) is False  # used up
    for n in range(fork + 1, fork + 4):
        assert r.new[n] != r.old[n] and chain_node.block_hash(n) == r.new[n]
    # the new chain hangs off the unchanged fork block, each block on its predecessor
    assert chain_node.block_hash(fork) == fork_hash
    for n in range(fork + 1, fork + 5):
        assert chain_node.block(n)["parentHash"] == chain_node.block_hash(n - 1)
    # the orphaned transfer is gone; the replacement transfer is canonical
    assert chain_node.rpc("eth_getTransactionReceipt", "0x" + bytes(old_tx).hex()) is None
    logs = chain_node.w3.eth.get_logs({"fromBlock": fork + 1, "toBlock": "latest", "address": token.address,
                                  "topics": [TRANSFER]})
    assert [(ev["args"]["to"], ev["args"]["value"]) for ev in map(token.events.Transfer().process_log, logs)] == [
        (carol, 7)]
    assert [token.functions.balanceOf(x).call() for x in (alice, bob, carol)] == [93, 0, 7]


def test_reorg_needs_a_snapshot_at_the_fork(chain_node: LocalNode) -> None:
    chain_node.mine(2)
    with pytest.raises(NodeError, match="needs a snapshot at block"):
        chain_node.reorg(1)


async def _subscribe_new_heads(url: str) -> websockets.ClientConnection:
    ws = await websockets.connect(url)
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}))
    assert "result" in json.loads(await ws.recv())
    return ws


async def _next_head(ws: websockets.ClientConnection) -> int:
    msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return int(msg["params"]["result"]["number"], 16)


async def test_proxy_cut_drops_websockets_and_reconnect_works(chain_node: LocalNode) -> None:
    ws = await _subscribe_new_heads(chain_node.proxied_ws_url)
    head = chain_node.mine()
    assert await _next_head(ws) == head

    chain_node.drop_websockets(refuse_new=True)
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    with pytest.raises(OSError):
        await websockets.connect(chain_node.proxied_ws_url, open_timeout=2)

    chain_node.accept_websockets()
    ws = await _subscribe_new_heads(chain_node.proxied_ws_url)
    head = chain_node.mine()
    assert await _next_head(ws) == head

    # a cut without refusing: the client sees the drop and may reconnect at once
    chain_node.drop_websockets()
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    ws = await _subscribe_new_heads(chain_node.proxied_ws_url)
    head = chain_node.mine()
    assert await _next_head(ws) == head
    await ws.close()


async def test_proxy_cut_ends_a_web3_subscription_stream(chain_node: LocalNode) -> None:
    # what connectors.chain.follower sees: web3's subscription stream raises instead of hanging
    with pytest.raises(websockets.ConnectionClosed):
        async with AsyncWeb3(WebSocketProvider(chain_node.proxied_ws_url)) as w3:
            await w3.eth.subscribe("newHeads")
            head = chain_node.mine()
            async with asyncio.timeout(5):
                async for msg in w3.socket.process_subscriptions():
                    assert msg["result"]["number"] == head
                    chain_node.drop_websockets()
