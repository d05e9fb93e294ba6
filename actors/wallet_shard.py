"""Wallet shard actors: each hosts the :class:`WalletBook` of the wallets hashing to it."""

from __future__ import annotations

import ray

from engine.chain.blocks import BlockData
from engine.wallets.book import Thresholds, WalletBook
from engine.wallets.cluster_book import ClusterBook
from schemas.records import ChainAlert, ChainBlock


class WalletShardHost:
    """One shard of per-wallet state; blocks arrive in canonical order, orphaned ones newest first."""

    def __init__(self, chain: str, shard: int, shards: int, prices: dict | None = None,
                 thresholds: Thresholds | None = None, window: int = 64, with_labels: bool = True) -> None:
        labels = None
        if with_labels:
            from engine.wallets.labels import LabelSet
            labels = LabelSet.load()
        self.book = WalletBook(chain, shard, shards, labels=labels, prices=prices, thresholds=thresholds,
                               window=window)

    def apply(self, block: BlockData) -> list[ChainAlert]:
        return self.book.apply_block(block.header, block.transfers)

    def rollback(self, orphaned: list[ChainBlock]) -> list[ChainAlert]:
        out: list[ChainAlert] = []
        for h in orphaned:
            out += self.book.rollback(h)
        return out

    def state(self) -> dict:
        return self.book.state()

    def set_prices(self, prices: dict) -> None:
        self.book.prices = dict(prices)


WalletShardActor = ray.remote(num_cpus=0)(WalletShardHost)


class RayChainSink:
    """A follower's sink that fans each block out to the wallet shard actors and gathers their alerts."""

    def __init__(self, shards: list, on_alerts=None, *, chain: str, labels=None, window: int = 64) -> None:
        self.shards = shards
        self.clusters = ClusterBook(chain, labels, window)  # needs every address: runs here, not in a shard
        self.on_alerts = on_alerts
        self.alerts: list[ChainAlert] = []

    async def apply(self, block: BlockData) -> None:
        results = await _gather([s.apply.remote(block) for s in self.shards])
        self._emit([a for r in results for a in r] + self.clusters.apply_block(block.header, block.transfers))

    async def retract(self, orphaned: list[ChainBlock], deep: bool) -> None:
        results = await _gather([s.rollback.remote(orphaned) for s in self.shards])
        self._emit([a for r in results for a in r] + [a for h in orphaned for a in self.clusters.rollback(h)])

    async def confirmed(self, numbers: list[int]) -> None:
        pass

    async def set_prices(self, prices: dict) -> None:
        await _gather([s.set_prices.remote(prices) for s in self.shards])

    def _emit(self, alerts: list[ChainAlert]) -> None:
        alerts.sort(key=lambda a: (a.block_number, a.retracted, a.id))  # same order whatever the shard count
        self.alerts += alerts
        if self.on_alerts and alerts:
            self.on_alerts(alerts)


async def _gather(refs: list) -> list:
    import asyncio
    return await asyncio.gather(*refs)
