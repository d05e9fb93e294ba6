"""Follows a chain live: new heads by WebSocket ``newHeads`` (web3 AsyncWeb3) or HTTP polling, blocks
fetched by number and checked against their parent, reorgs rolled back, confirmations tracked.

Blocks are processed strictly by number from ``next``: a head notification only says how far to go,
so a dropped subscription, a reconnect or a burst of heads can never skip a block or process one
twice; after a reconnect the follower simply catches up by number. A block whose parent hash is not
the stored head is a reorg: the follower walks down the node's canonical chain to the fork point,
hands the orphaned blocks (newest first) to ``sink.retract`` and goes on from the fork.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from connectors.retry import Backoff
from engine.chain.blocks import BlockData, block_data, header_of
from engine.chain.errors import ChainDataError
from engine.chain.swaps import TokenMetadata, swap_trade
from engine.chain.tracker import ChainTracker
from schemas.records import ChainBlock


class ChainSink(Protocol):
    """Where a follower's canonical blocks and retractions go (wallet shards, storage, feed)."""

    async def apply(self, block: BlockData) -> None: ...

    async def retract(self, orphaned: list[ChainBlock], deep: bool) -> None: ...

    async def confirmed(self, numbers: list[int]) -> None: ...


@dataclass
class FollowerConfig:
    window: int = 64  # blocks kept for reorg detection and rollback
    confirmations: int = 12
    poll_s: float = 2.0  # HTTP polling period (and the fallback while the WebSocket is down)
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0


class ChainFollower:
    """One chain's live source; ``stats`` counts blocks, reorgs, reconnects and rejected responses."""

    def __init__(self, rpc, sink: ChainSink, *, from_block: int, ws_url: str | None = None,
                 config: FollowerConfig | None = None, chain: str = "ethereum", price_swaps: bool = True) -> None:
        self.rpc = rpc
        self.tokens = TokenMetadata(rpc) if price_swaps else None
        self.sink = sink
        self.ws_url = ws_url
        self.config = config or FollowerConfig()
        self.chain = chain
        self.tracker = ChainTracker(self.config.window, self.config.confirmations)
        self.next = from_block
        self.target = -1
        self._wake = asyncio.Event()
        self._stopping = False
        self.processed: list[int] = []  # block numbers applied, in order (reorg replays included)
        self.stats = {"blocks": 0, "reorgs": 0, "orphaned": 0, "deep_reorgs": 0, "reconnects": 0,
                      "rejected": 0, "heads": 0}
        self.last_error = ""

    async def run(self, until_block: int | None = None) -> None:
        """Follow until ``stop()`` (or until ``until_block`` is processed)."""
        watcher = asyncio.ensure_future(self._watch_heads())
        try:
            while not self._stopping:
                try:
                    self.target = max(self.target, await self.rpc.block_number())
                except (ChainDataError, OSError, asyncio.TimeoutError, RuntimeError) as e:
                    self._error(e)
                    await asyncio.sleep(self.config.poll_s)
                    continue
                while self.next <= self.target and not self._stopping:
                    if not await self._step():
                        await asyncio.sleep(self.config.poll_s)
                        break
                if until_block is not None and self.next > until_block:
                    return
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.config.poll_s)
                except asyncio.TimeoutError:
                    pass
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def _error(self, e: BaseException) -> None:
        self.last_error = f"{type(e).__name__}: {e}"[:300]
        if isinstance(e, ChainDataError):
            self.stats["rejected"] += 1

    async def _fetch(self, number: int) -> BlockData | None:
        try:
            raw = await self.rpc.get_block(number, True)
            if raw is None:
                return None  # not mined yet (the head moved back in a reorg)
            # receipts give the logs and each transaction's status (a reverted one moved no value)
            receipts = await self.rpc.get_block_receipts(raw)
            logs = [entry for r in receipts for entry in (r.get("logs") or [])]
            failed = {r.get("transactionHash") for r in receipts if r.get("status") == "0x0"}
            block = block_data(raw, logs, failed)
            if self.tokens is not None:
                for swap in block.swaps:  # on-chain trades join the market pipeline like exchange trades
                    meta = await self.tokens.pool(swap.get("pair_address") or swap.get("pool_address"))
                    trade = swap_trade(swap, meta, block.header.timestamp) if meta else None
                    if trade is not None:
                        block.trades.append(trade)
            return block
        except (ChainDataError, OSError, asyncio.TimeoutError, RuntimeError) as e:
            self._error(e)
            return None

    async def _step(self) -> bool:
        """Process block ``next``; returns False when it could not be fetched (retry later)."""
        block = await self._fetch(self.next)
        if block is None:
            return False
        header = block.header
        if self.tracker.extends(header):
            await self.sink.apply(block)
            self.processed.append(header.number)
            self.stats["blocks"] += 1
            confirmed = self.tracker.append(header)
            if confirmed:
                await self.sink.confirmed(confirmed)
            self.next += 1
            return True
        try:
            await self._reorg(header)
        except (ChainDataError, OSError, asyncio.TimeoutError, RuntimeError) as e:
            self._error(e)
            return False
        return True

    async def _reorg(self, header: ChainBlock) -> None:
        """``header`` does not extend the head: find the fork point on the node's chain and roll back."""
        canonical: dict[int, str] = {}
        fork = None
        number = min(header.number - 1, self.tracker.head.number)
        while number >= (self.tracker.lowest or 0):
            raw = await self.rpc.get_block(number, False)
            if raw is None:
                return  # the node is mid-switch: try again on the next round
            canonical[number] = header_of(raw).hash
            if self.tracker.known(number) and canonical[number] == self.tracker.known(number).hash:
                fork = number
                break
            number -= 1
        if fork is None:
            self.stats["deep_reorgs"] += 1
            orphaned = self.tracker.deep_reorg()
            self.stats["orphaned"] += len(orphaned)
            await self.sink.retract(orphaned, True)
            self.next = orphaned[-1].number if orphaned else header.number
            return
        orphaned = self.tracker.rollback_to(fork)
        self.stats["reorgs"] += 1
        self.stats["orphaned"] += len(orphaned)
        await self.sink.retract(orphaned, False)
        self.next = fork + 1

    async def _watch_heads(self) -> None:
        """Wake the main loop on each new head; reconnect with backoff and jitter when the socket drops."""
        if not self.ws_url:
            return
        from web3 import AsyncWeb3, WebSocketProvider
        backoff = Backoff(self.config.backoff_initial_s, self.config.backoff_max_s)
        first = True
        while not self._stopping:
            if not first:
                self.stats["reconnects"] += 1
                await asyncio.sleep(backoff.next())
            first = False
            try:
                async with AsyncWeb3(WebSocketProvider(self.ws_url)) as w3:
                    await w3.eth.subscribe("newHeads")
                    backoff.reset()
                    self._wake.set()  # catch up by number right after (re)connecting
                    async for msg in w3.socket.process_subscriptions():
                        head = msg.get("result", {}) if isinstance(msg, dict) else {}
                        number = head.get("number") if hasattr(head, "get") else None
                        if isinstance(number, int):
                            self.target = max(self.target, number)
                        elif isinstance(number, str):
                            self.target = max(self.target, int(number, 16))
                        self.stats["heads"] += 1
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any socket failure: the loop polls meanwhile, then we reconnect
                self.last_error = f"newHeads: {type(e).__name__}: {e}"[:300]
            self._wake.set()
