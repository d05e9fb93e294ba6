"""The downstream state of a chain follower, in one process: wallet shards, stored transfers, alerts.

The Ray deployment hosts the same :class:`WalletBook` shards in actors (``actors/wallet_shard.py``);
this class is the in-process form used by ``chain follow --in-process``, by tests and by the fresh
-run comparisons: after any reorgs, its state must equal a fresh run over the final canonical chain.
"""

from __future__ import annotations

from engine.chain.blocks import BlockData
from engine.wallets.book import Thresholds, WalletBook
from engine.wallets.cluster_book import ClusterBook
from schemas.records import ChainAlert, ChainBlock


class ChainState:
    """Applies canonical blocks and retracts orphaned ones across ``shards`` wallet books."""

    def __init__(self, chain: str = "ethereum", shards: int = 2, *, labels=None, prices=None,
                 thresholds: Thresholds | None = None, window: int = 64) -> None:
        self.books = [WalletBook(chain, i, shards, labels=labels, prices=prices, thresholds=thresholds,
                                 window=window) for i in range(shards)]
        self.clusters = ClusterBook(chain, labels, window)
        self.transfers: dict[str, list] = {}  # block hash -> transfers stored for it
        self.blocks: dict[int, str] = {}  # number -> hash of the applied canonical block
        self.alerts: list[ChainAlert] = []  # everything emitted, retractions included, in order
        self.trades: dict[str, list] = {}  # block hash -> on-chain swaps as trade ticks
        self.confirmed_through = -1

    async def apply(self, block: BlockData) -> None:
        h = block.header
        for book in self.books:
            self.alerts += book.apply_block(h, block.transfers)
        self.alerts += self.clusters.apply_block(h, block.transfers)
        self.transfers[h.hash] = list(block.transfers)
        self.blocks[h.number] = h.hash
        if block.trades:
            self.trades[h.hash] = list(block.trades)

    async def retract(self, orphaned: list[ChainBlock], deep: bool) -> None:
        for h in orphaned:  # newest first: each book undoes exactly what that block did
            for book in self.books:
                self.alerts += book.rollback(h)
            self.alerts += self.clusters.rollback(h)
            self.transfers.pop(h.hash, None)
            if self.blocks.get(h.number) == h.hash:
                del self.blocks[h.number]
            self.trades.pop(h.hash, None)

    async def set_prices(self, prices: dict) -> None:
        for book in self.books:
            book.prices = dict(prices)

    async def confirmed(self, numbers: list[int]) -> None:
        self.confirmed_through = max(self.confirmed_through, *numbers)

    # ---- views --------------------------------------------------------------------------------
    def wallets(self) -> dict:
        out: dict = {}
        for book in self.books:
            out.update(book.state())
        clusters = self.clusters.clusters
        return {a: (*v, clusters.cluster_of(a)) for a, v in sorted(out.items())}

    def live_alerts(self) -> list[ChainAlert]:
        """Alerts still standing: emitted and not retracted (ids are stable per block)."""
        live: dict[str, ChainAlert] = {}
        for a in self.alerts:  # in order: a block re-applied after a retraction emits its ids again
            if a.retracted:
                live.pop(a.id, None)
            else:
                live[a.id] = a
        return sorted(live.values(), key=lambda a: (a.block_number, a.id))

    def stored_transfers(self) -> list:
        return [t for h in sorted(self.transfers, key=lambda h: self._number(h)) for t in self.transfers[h]]

    def _number(self, block_hash: str) -> int:
        return next((n for n, h in self.blocks.items() if h == block_hash), -1)
