"""Level-2 order books kept from a snapshot plus diffs, with each venue's sequencing rule.

:class:`L2Book` holds price -> size per side. :class:`BookSync` decides, per update, whether it
applies, is stale (already covered by the snapshot) or reveals a gap that needs a resync, using
the venue's rule: Binance spot (first ``U <= snapshot+1 <= u``, then ``U == last u + 1``), Binance
futures (first ``U <= snapshot <= u``, then ``pu == last u``), previous-id venues (OKX
``prevSeqId``), consecutive ids (Bybit ``u``), or none (the venue offers only checksums).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.records import BookUpdate

APPLIED, STALE, BUFFERED, GAP = "applied", "stale", "buffered", "gap"
RULES = ("binance_spot", "binance_futures", "prev_id", "consecutive", "none")


@dataclass
class L2Book:
    """One market's book: price -> size for bids and asks."""

    market: str
    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)
    last_seq: int = -1
    ts: int = 0

    def reset(self, snapshot: BookUpdate) -> None:
        self.bids = {p: s for p, s in snapshot.bids if s > 0}
        self.asks = {p: s for p, s in snapshot.asks if s > 0}
        self.last_seq, self.ts = snapshot.last_seq, snapshot.ts

    def apply(self, update: BookUpdate) -> None:
        for side, rows in ((self.bids, update.bids), (self.asks, update.asks)):
            for p, s in rows:
                if s > 0:
                    side[p] = s
                else:
                    side.pop(p, None)
        if update.last_seq >= 0:
            self.last_seq = update.last_seq
        self.ts = max(self.ts, update.ts)

    def top(self, depth: int = 10) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """Best ``depth`` bids (high to low) and asks (low to high)."""
        bids = sorted(self.bids.items(), key=lambda kv: -kv[0])[:depth]
        asks = sorted(self.asks.items())[:depth]
        return bids, asks

    def best(self) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
        bid = max(self.bids.items()) if self.bids else None
        ask = min(self.asks.items()) if self.asks else None
        return bid, ask

    def crossed(self) -> bool:
        bid, ask = self.best()
        return bid is not None and ask is not None and bid[0] >= ask[0]


class BookSync:
    """Keeps one market's :class:`L2Book` in sync: buffers diffs until a snapshot, detects gaps.

    ``on_update`` returns what happened to the update; on ``GAP`` the book is marked out of sync
    and the caller fetches a new snapshot (``on_snapshot``), while later diffs are buffered.
    """

    def __init__(self, market: str, rule: str, max_buffer: int = 10_000) -> None:
        if rule not in RULES:
            raise ValueError(f"book rule must be one of {RULES}, got {rule!r}")
        self.book = L2Book(market)
        self.rule = rule
        self.synced = False
        self.first_after_snapshot = False
        self.buffer: list[BookUpdate] = []
        self.max_buffer = max_buffer
        self.stats = {"applied": 0, "stale": 0, "gaps": 0, "resyncs": 0, "buffer_overflow": 0}

    def on_snapshot(self, snapshot: BookUpdate) -> list[str]:
        """Reset from a snapshot and replay buffered diffs; returns the outcome of each replayed diff."""
        self.book.reset(snapshot)
        self.synced = True
        self.first_after_snapshot = True
        self.stats["resyncs"] += 1
        pending, self.buffer = self.buffer, []
        return [self.on_update(u) for u in pending]

    def on_update(self, update: BookUpdate) -> str:
        if update.snapshot:
            self.on_snapshot(update)
            return APPLIED
        if not self.synced:
            if len(self.buffer) >= self.max_buffer:
                self.buffer.pop(0)
                self.stats["buffer_overflow"] += 1
            self.buffer.append(update)
            return BUFFERED
        verdict = self._check(update)
        if verdict == APPLIED:
            self.book.apply(update)
            self.first_after_snapshot = False
        elif verdict == GAP:
            self.synced = False
            self.stats["gaps"] += 1
            self.buffer = [update]
        self.stats[{APPLIED: "applied", STALE: "stale", GAP: "gaps"}[verdict]] += verdict != GAP
        return verdict

    def _check(self, u: BookUpdate) -> str:
        last = self.book.last_seq
        if self.rule == "none" or u.last_seq < 0:  # no sequence numbers on this message: nothing to check
            return APPLIED
        if self.rule == "binance_futures" and self.first_after_snapshot:
            # futures docs: drop u < lastUpdateId; the first applied event has U <= lastUpdateId <= u
            if u.last_seq < last:
                return STALE
            return APPLIED if u.first_seq <= last <= u.last_seq else GAP
        if u.last_seq <= last:
            return STALE
        if self.rule == "binance_spot" and self.first_after_snapshot:
            return APPLIED if u.first_seq <= last + 1 <= u.last_seq else GAP
        if self.rule == "binance_spot" or self.rule == "consecutive":
            return APPLIED if u.first_seq == last + 1 else GAP
        # binance_futures after the first event, and prev-id venues: the update names its predecessor
        return APPLIED if u.prev_seq == last else GAP
