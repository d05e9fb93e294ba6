"""Reject unusable input rows with counts and reasons; never crash, never drop a valid row.

Only the input edge (file and venue sources) drops rows; everything after it may assume clean
data. Row numbers in examples are 0-based data rows of the source (header excluded).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.ordering import rows_behind
from schemas.batches import CandleBatch, TradeBatch

NO_TS = np.iinfo(np.int64).min  # an unparsable timestamp, as pandas' NaT

# Reasons whose rows are kept: worth knowing, not a reason to lose data.
WARNINGS = frozenset({"out_of_order", "side_unknown", "volume_missing", "ohlc_inconsistent"})


@dataclass
class Rejects:
    """Rows rejected (or kept with a warning) per reason, with a few example row numbers each."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[int]] = field(default_factory=dict)
    max_examples: int = 5

    def add(self, reason: str, count: int, examples=()) -> None:
        """Count ``count`` rows under ``reason``, keeping the first few example row numbers."""
        if count <= 0:
            return
        self.counts[reason] = self.counts.get(reason, 0) + int(count)
        ex = self.examples.setdefault(reason, [])
        room = self.max_examples - len(ex)
        if room > 0:
            ex.extend(int(r) for r in np.asarray(examples).ravel()[:room])

    def add_rows(self, reason: str, rows: np.ndarray) -> None:
        """Count every row number in ``rows`` under ``reason``."""
        self.add(reason, len(rows), rows)

    def merge(self, other: "Rejects") -> "Rejects":
        for reason, n in other.counts.items():
            self.add(reason, n, other.examples.get(reason, []))
        return self

    @property
    def rejected(self) -> int:
        """Rows dropped."""
        return sum(n for r, n in self.counts.items() if r not in WARNINGS)

    total = rejected  # the name callers reach for first

    @property
    def warned(self) -> dict[str, int]:
        """Counts of reasons whose rows were kept."""
        return {r: n for r, n in self.counts.items() if r in WARNINGS}

    def __bool__(self) -> bool:
        return bool(self.counts)

    def as_dict(self) -> dict:
        return {"rejected": self.rejected, "counts": dict(self.counts),
                "examples": {k: list(v) for k, v in self.examples.items()}}

    def summary(self) -> str:
        """One line for logs, e.g. ``2 rows rejected: price_not_finite=2 (rows 4, 9)``."""
        if not self.counts:
            return "no rows rejected"
        parts = [f"{r}={n} (rows {', '.join(map(str, self.examples.get(r, [])))})"
                 for r, n in sorted(self.counts.items())]
        return f"{self.rejected} rows rejected; " + "; ".join(parts)


def _check(rejects: Rejects, rows: np.ndarray, bad: np.ndarray, keep: np.ndarray, reason: str) -> None:
    """Count rows failing a check that no earlier check rejected, and mark them dropped."""
    new = bad & keep
    if new.any():
        rejects.add_rows(reason, rows[new])
        keep &= ~new


def clean_trades(batch: TradeBatch, rejects: Rejects | None = None,
                 rows: np.ndarray | None = None) -> tuple[TradeBatch, Rejects]:
    """Drop trades with an unparsable time, a non-finite or non-positive price or size.

    ``rows`` maps batch positions to source row numbers (default: positions). Each dropped row is
    counted once, under the first check it fails. Out-of-order rows are kept and counted.
    """
    rejects = Rejects() if rejects is None else rejects
    rows = np.arange(len(batch)) if rows is None else np.asarray(rows)
    keep = np.ones(len(batch), bool)
    with np.errstate(invalid="ignore"):
        _check(rejects, rows, batch.ts == NO_TS, keep, "timestamp_invalid")
        _check(rejects, rows, ~np.isfinite(batch.price), keep, "price_not_finite")
        _check(rejects, rows, batch.price <= 0, keep, "price_not_positive")
        _check(rejects, rows, ~np.isfinite(batch.size), keep, "size_not_finite")
        _check(rejects, rows, batch.size <= 0, keep, "size_not_positive")
    if not keep.all():
        batch, rows = batch.take(keep), rows[keep]
    rejects.add_rows("out_of_order", rows[rows_behind(batch.market, batch.ts)])
    return batch, rejects


def clean_candles(batch: CandleBatch, rejects: Rejects | None = None,
                  rows: np.ndarray | None = None) -> tuple[CandleBatch, Rejects]:
    """Drop candles with an unparsable time, a non-finite or non-positive price or negative volume.

    Kept with a warning: missing volume (e.g. mark-price candles), high/low not bracketing
    open/close, rows out of time order.
    """
    rejects = Rejects() if rejects is None else rejects
    rows = np.arange(len(batch)) if rows is None else np.asarray(rows)
    keep = np.ones(len(batch), bool)
    prices = np.stack([batch.open, batch.high, batch.low, batch.close]) if len(batch) else np.empty((4, 0))
    with np.errstate(invalid="ignore"):
        _check(rejects, rows, batch.open_ts == NO_TS, keep, "timestamp_invalid")
        _check(rejects, rows, ~np.isfinite(prices).all(axis=0), keep, "price_not_finite")
        _check(rejects, rows, (prices <= 0).any(axis=0), keep, "price_not_positive")
        _check(rejects, rows, batch.volume < 0, keep, "volume_negative")
        _check(rejects, rows, np.isinf(batch.volume), keep, "volume_not_finite")
    if not keep.all():
        batch, rows = batch.take(keep), rows[keep]
    rejects.add_rows("volume_missing", rows[np.isnan(batch.volume)])
    bad_range = (batch.high < np.maximum(batch.open, batch.close)) | (batch.low > np.minimum(batch.open, batch.close))
    rejects.add_rows("ohlc_inconsistent", rows[bad_range])
    key = batch.market.astype(np.int64) * (1 << 40) + batch.tf // 1_000_000_000  # one run per market and timeframe
    rejects.add_rows("out_of_order", rows[rows_behind(key, batch.open_ts)])
    return batch, rejects
