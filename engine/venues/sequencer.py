"""Per-market trade continuity: drops duplicates, detects id gaps, holds trades until a repair lands.

Pure logic (no I/O, no clock of its own): the supervisor feeds it parsed trades, asks it which
gaps need a REST backfill, hands it the backfilled trades, and calls ``expire`` with the time so
trades held too long are released (the gap then stays open and its bars are degraded).
Only venues whose trade ids are consecutive per market get gap detection; others pass through.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from schemas.batches import TradeBatch


@dataclass
class Gap:
    """Missing trade ids ``from_id..to_id`` of one market, between the trades at ``start_ts``/``end_ts``."""

    gap_id: int
    market: str
    from_id: int
    to_id: int
    start_ts: int  # event time of the last trade before the hole
    end_ts: int  # event time of the first trade after it
    opened_at: float  # supervisor clock, seconds
    recovered: int = 0
    released: bool = False  # held trades were let go before the repair finished (bars degraded)
    repaired: bool = False

    @property
    def missing(self) -> int:
        return self.to_id - self.from_id + 1


@dataclass
class _Market:
    last_id: int = -1
    last_ts: int = 0
    held: list = field(default_factory=list)  # rows (ts, price, size, side, id) waiting behind a gap
    gaps: list[Gap] = field(default_factory=list)  # open gaps, oldest first
    found: dict[int, tuple] = field(default_factory=dict)  # backfilled rows by id for open gaps


class TradeSequencer:
    """Orders one venue's trades per market by id; see the module docstring."""

    def __init__(self, contiguous: bool, hold_s: float = 2.0, max_held: int = 200_000) -> None:
        self.contiguous = contiguous
        self.hold_s = hold_s
        self.max_held = max_held
        self.markets: dict[str, _Market] = {}
        self._next_gap = 1
        self.stats = {"trades": 0, "duplicates": 0, "gaps": 0, "missing": 0, "recovered": 0, "released": 0}

    def _state(self, market: str) -> _Market:
        st = self.markets.get(market)
        if st is None:
            st = self.markets[market] = _Market()
        return st

    def accept(self, batch: TradeBatch, now: float) -> tuple[list[tuple], list[Gap]]:
        """Rows ready to go downstream as ``(market, ts, price, size, side, id)`` and the gaps just found."""
        markets = batch.markets
        return self.accept_rows(zip([markets[m] for m in batch.market.tolist()], batch.ts.tolist(),
                                    batch.price.tolist(), batch.size.tolist(), batch.side.tolist(),
                                    batch.trade_id.tolist()), now)

    def accept_rows(self, rows, now: float) -> tuple[list[tuple], list[Gap]]:
        """As :meth:`accept`, from rows ``(market, ts, price, size, side, id)`` (the supervisor's per-frame path)."""
        ready: list[tuple] = []
        new_gaps: list[Gap] = []
        for market, ts, p, s, sd, tid in rows:
            self.stats["trades"] += 1
            if not self.contiguous or tid < 0:
                ready.append((market, ts, p, s, sd, tid))
                continue
            st = self._state(market)
            if st.last_id >= 0 and tid <= st.last_id:
                self.stats["duplicates"] += 1  # replayed after a reconnect, or sent twice
                continue
            if st.last_id >= 0 and tid > st.last_id + 1:
                gap = Gap(self._next_gap, market, st.last_id + 1, tid - 1, st.last_ts, ts, now)
                self._next_gap += 1
                st.gaps.append(gap)
                new_gaps.append(gap)
                self.stats["gaps"] += 1
                self.stats["missing"] += gap.missing
            st.last_id, st.last_ts = tid, ts
            row = (market, ts, p, s, sd, tid)
            if st.held or (st.gaps and _blocking(st)):
                st.held.append(row)
                if len(st.held) > self.max_held:
                    ready.extend(self._release(market, st))
            else:
                ready.append(row)
        return ready, new_gaps

    def repair(self, gap: Gap, batch: TradeBatch) -> tuple[list[tuple], list[tuple]]:
        """Hand in backfilled trades for ``gap``; returns (rows now ready in order, late rows of released gaps).

        Late rows are trades recovered after their gap was released: too late for the live bars,
        they go to the repair path that rebuilds the degraded bars.
        """
        st = self._state(gap.market)
        late: list[tuple] = []
        for ts, p, s, sd, tid in zip(batch.ts.tolist(), batch.price.tolist(), batch.size.tolist(),
                                     batch.side.tolist(), batch.trade_id.tolist()):
            if gap.from_id <= tid <= gap.to_id and tid not in st.found:
                row = (gap.market, ts, p, s, sd, tid)
                st.found[tid] = row
                gap.recovered += 1
                self.stats["recovered"] += 1
                if gap.released:
                    late.append(row)
        ready: list[tuple] = []
        if gap.recovered >= gap.missing:
            gap.repaired = True
            ready = self._drain_repaired(st)
        return ready, sorted(late, key=lambda r: r[5])

    def _drain_repaired(self, st: _Market) -> list[tuple]:
        """Release recovered + held rows, in id order, up to the first gap still blocking."""
        blocking = [g for g in st.gaps if not g.released and not g.repaired]
        limit = blocking[0].from_id if blocking else None
        rows: list[tuple] = []
        for gap in [g for g in st.gaps if g.repaired and (limit is None or g.to_id < limit)]:
            found = [st.found.pop(i, None) for i in range(gap.from_id, gap.to_id + 1)]
            if not gap.released:  # a released gap's rows already went out as late rows
                rows.extend(r for r in found if r is not None)  # a gap given up on may be partial
            st.gaps.remove(gap)
        keep = []
        for row in st.held:
            (rows if limit is None or row[5] < limit else keep).append(row)
        st.held = keep
        rows.sort(key=lambda r: r[5])
        return rows

    def expire(self, now: float) -> tuple[list[tuple], list[Gap]]:
        """Release markets whose oldest open gap has been held longer than ``hold_s``."""
        ready: list[tuple] = []
        released: list[Gap] = []
        for market, st in self.markets.items():
            if st.gaps and not st.gaps[0].released and now - st.gaps[0].opened_at >= self.hold_s:
                released.extend(g for g in st.gaps if not g.released)
                ready.extend(self._release(market, st))
        return ready, released

    def _release(self, market: str, st: _Market) -> list[tuple]:
        for g in st.gaps:
            if not g.released:
                g.released = True
                self.stats["released"] += 1
        rows, st.held = st.held, []
        return rows

    def open_gaps(self) -> list[Gap]:
        return [g for st in self.markets.values() for g in st.gaps]

    def forget(self, gap: Gap) -> list[tuple]:
        """Give up on a gap the venue cannot serve: it counts as released; returns rows no longer held."""
        st = self._state(gap.market)
        if gap not in st.gaps:
            return []
        gap.repaired = True  # nothing more will come: stop blocking on it
        rows = self._drain_repaired(st)  # what was recovered still goes out, in order
        if not gap.released:
            gap.released = True
            self.stats["released"] += 1
        return rows


def _blocking(st: _Market) -> bool:
    return any(not g.released and not g.repaired for g in st.gaps)


def rows_to_batch(rows: list[tuple]) -> TradeBatch:
    """Rows ``(market, ts, price, size, side, id)`` as one TradeBatch."""
    if not rows:
        return TradeBatch.empty()
    lut: dict[str, int] = {}
    idx = np.fromiter((lut.setdefault(r[0], len(lut)) for r in rows), np.int32, len(rows))
    cols = list(zip(*rows))
    return TradeBatch(list(lut), idx, np.array(cols[1], np.int64), np.array(cols[2], np.float64),
                      np.array(cols[3], np.float64), np.array(cols[4], np.int8), np.array(cols[5], np.int64))
