"""DEX swaps held until their block is confirmed, then released as market trades.

Candles and signals are never built from trades a reorg could still take back; wallet alerts, in
contrast, go out at once and are retracted when needed.
"""

from __future__ import annotations

import numpy as np

from schemas.batches import SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN, TradeBatch
from schemas.records import TradeTick


class ConfirmedSwaps:
    """Swap trades by block number, with the block hash they came from."""

    def __init__(self) -> None:
        self.pending: dict[int, tuple[str, list[TradeTick]]] = {}

    def hold(self, number: int, block_hash: str, trades: list[TradeTick]) -> None:
        if trades:
            self.pending[number] = (block_hash, list(trades))

    def drop(self, orphaned) -> None:
        """Forget the trades of orphaned blocks (headers with ``number`` and ``hash``)."""
        for h in orphaned:
            if self.pending.get(h.number, ("",))[0] == h.hash:
                del self.pending[h.number]

    def release(self, numbers: list[int]) -> list[TradeTick]:
        """The trades of blocks just confirmed, in block order."""
        return [t for n in sorted(numbers) for t in self.pending.pop(n, ("", []))[1]]


def trade_batch(trades: list[TradeTick]) -> TradeBatch:
    """Trade records as one columnar batch for the market pipeline."""
    lut: dict[str, int] = {}
    idx = np.array([lut.setdefault(t.market, len(lut)) for t in trades], np.int32)
    sides = {"buy": SIDE_BUY, "sell": SIDE_SELL}
    return TradeBatch(list(lut), idx, np.array([t.ts for t in trades], np.int64),
                      np.array([t.price for t in trades]), np.array([t.size for t in trades]),
                      np.array([sides.get(t.side, SIDE_UNKNOWN) for t in trades], np.int8),
                      np.array([t.trade_id for t in trades], np.int64))


def priced_assets(records, asset_ids: dict[str, str]) -> dict[str, float]:
    """USD price per token address ('' for the native coin) from reference prices keyed by asset id."""
    by_asset = {rec.asset: rec.price_usd for rec in records}
    return {token: by_asset[cid] for token, cid in asset_ids.items() if cid in by_asset}
