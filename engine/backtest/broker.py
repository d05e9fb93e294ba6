"""A simulated broker: one shared account over the bars of one or many markets, in time order, compiled.

Rules (docs/backtesting.md says the same for users):

- A signal is acted on at the close of the bar that fired it. Market orders fill at the next bar's open
  (``fill="next_open"``) or at that close (``fill="close"``); limit and stop entries work for
  ``entry_bars`` bars from the next one. Fills are sized when they happen, from the equity marked at the
  last close and the fill price.
- ``long-only``: a buy opens a long when flat, a sell closes it. ``short-only``: the mirror image.
  ``long-short``: a signal against the position closes it and opens the other way (one order each). A
  signal in the position's direction, or against nothing, is ignored (and counted). Of several signals of
  one market at one bar the first in canonical order is taken.
- Stop and first target come from the signal. They are checked in every bar after the fill, and in the
  fill bar itself when the fill was at its open; a fill inside a bar is checked against the stop only in
  that bar (the conservative order). A bar opening beyond a level fills at the open. A bar touching both:
  the stop wins (``intrabar="stop"``), the target (``"target"``), or the level the bar's path reaches
  first with open -> low -> high -> close for an up bar and open -> high -> low -> close for a down bar
  (``"ohlc"``).
- Taker fee (``fee``) and slippage on market and stop fills; maker fee and no slippage on limit fills
  and targets. Slippage = ``slippage_bps`` plus ``slippage_volume`` x (size / the bar's volume).
- Funding: at each funding time a held position pays ``qty x mark x rate`` (longs pay positive rates),
  marked at the market's last close.
- A position still open at its market's last bar is closed at that bar's close (reason ``end``), with the
  taker fee and ``slippage_bps``; the equity row of that close already reflects it.
- Order sides: +1 buy, -1 sell (as above, by mode) and ``SIDE_EXIT`` (2): close the position at the next
  fill (the next open, or this close with ``fill="close"``) and enter nothing, in every mode; it cancels a
  working entry when flat and is counted as ignored when there is nothing to close. It makes "flat"
  expressible in long-short mode, where a sell against a long reverses it.

``step`` is the per-bar body: the close of one bar and the open of the next over state arrays
(``new_state``); ``simulate`` runs it over every bar in one compiled loop, and the RL environment calls it one
bar at a time, so both keep the same books.

Every fill and funding payment is a ledger row; equity (cash plus positions marked at the last close) is
recorded at every distinct bar close.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from engine.backtest.settings import ENTRIES, FILLS, INTRABAR, MODES, SIZE_KINDS, BacktestSettings

# ledger codes
KIND_FILL, KIND_FUNDING = 0, 1
REASONS = ("entry", "signal", "stop", "target", "end", "funding")
R_ENTRY, R_SIGNAL, R_STOP, R_TARGET, R_END, R_FUNDING = range(6)
COUNTERS = ("signals", "entries", "exits", "ignored_same_side", "ignored_no_position", "skipped_no_capital",
            "skipped_no_stop", "expired_orders", "cancelled_orders", "funding_payments")

SIDE_EXIT = 2  # order side: close the position, no entry

# state layout for ``step``: per-market floats (mf rows), per-market ints (mi rows), account ints (ai)
QTY, EPRICE, EFEE, EFUND, PSTOP, PTARGET, LAST, OLEVEL, OSTOP, OTARGET = range(10)
MF_ROWS = 10
ETS, LAST_TS, ODIR, OLEFT, FRESH, XPEND, FINAL = range(7)
MI_ROWS = 7
NF, NT, NE, FI, LO, HI, C0 = range(7)  # fills, trades, equity rows written; next funding; bars stepped; counters
AI_ROWS = C0 + len(COUNTERS)
CASH = 0  # acc[CASH]

# parameter vector layout (floats and ints), built by ``_params``
_F = ("fee", "maker", "slip_bps", "slip_vol", "cash", "leverage", "size_value", "offset_bps")
_I = ("fill", "mode", "intrabar", "entry", "entry_bars", "size_kind")


@dataclass
class Bars:
    """Bars of every market, sorted by close time then market (``order_bars`` does it)."""

    market: np.ndarray  # int64 index into markets
    open_ts: np.ndarray  # int64 ns
    close_ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    markets: list[str]

    def __len__(self) -> int:
        return len(self.open_ts)


@dataclass
class Orders:
    """One slot per bar: the signal acted on at that bar's close (side 0: none)."""

    side: np.ndarray  # int8: +1 buy, -1 sell, 2 exit (SIDE_EXIT), 0 none
    price: np.ndarray  # the signal's price (the bar's close)
    stop: np.ndarray  # NaN: none
    target: np.ndarray  # NaN: none

    @classmethod
    def none(cls, n: int) -> "Orders":
        return cls(np.zeros(n, np.int8), np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan))


@dataclass
class Funding:
    ts: np.ndarray  # int64 ns, sorted
    market: np.ndarray  # int64 index into the bars' markets
    rate: np.ndarray

    @classmethod
    def none(cls) -> "Funding":
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))


@dataclass
class Ledger:
    """What the broker did: fills and funding, closed trades, the equity curve and counters."""

    fills: dict[str, np.ndarray]  # ts, market, kind, side, price, qty, fee, cash_flow, reason
    trades: dict[str, np.ndarray]  # market, side, entry_ts, entry_price, exit_ts, exit_price, size, fees, pnl,
    #                                return, funding, exit_reason
    equity: dict[str, np.ndarray]  # ts, equity, cash, exposure
    counters: dict[str, int]
    markets: list[str]


def order_bars(bars: Bars, orders: Orders | None = None) -> tuple[Bars, Orders | None]:
    """Bars (and their orders) in the broker's order: close time, then market."""
    if len(bars) < 2 or np.all(np.diff(bars.close_ts) > 0):  # one market, in time order: nothing to sort
        return bars, orders
    idx = np.lexsort((bars.market, bars.close_ts))
    b = Bars(*(getattr(bars, f)[idx] for f in ("market", "open_ts", "close_ts", "open", "high", "low", "close",
                                                 "volume")), bars.markets)
    o = None if orders is None else Orders(orders.side[idx], orders.price[idx], orders.stop[idx], orders.target[idx])
    return b, o


def step_params(s: BacktestSettings) -> tuple[np.ndarray, np.ndarray]:
    """The settings as the float and int parameter vectors ``step`` takes."""
    return _params(s)


def _params(s: BacktestSettings) -> tuple[np.ndarray, np.ndarray]:
    floats = np.array([s.fee, s.maker, s.slippage_bps, s.slippage_volume, s.cash, s.leverage, s.size.value,
                       s.entry_offset_bps], np.float64)
    ints = np.array([FILLS.index(s.fill), MODES.index(s.mode), INTRABAR.index(s.intrabar), ENTRIES.index(s.entry),
                     s.entry_bars, SIZE_KINDS.index(s.size.kind)], np.int64)
    return floats, ints


def simulate(bars: Bars, orders: Orders, settings: BacktestSettings, funding: Funding | None = None) -> Ledger:
    """Run the broker over bars already in ``order_bars`` order."""
    funding = funding or Funding.none()
    if len(bars) and np.any(np.diff(bars.close_ts) < 0):
        raise ValueError("bars must be sorted by close time (order_bars)")
    floats, ints = _params(settings)
    i64, f64 = (lambda a: np.ascontiguousarray(a, np.int64)), (lambda a: np.ascontiguousarray(a, np.float64))
    lfi, lff, lti, ltf, lei, lef, ai = _simulate(
        i64(bars.market), i64(bars.open_ts), i64(bars.close_ts), f64(bars.open), f64(bars.high), f64(bars.low),
        f64(bars.close), f64(bars.volume), np.ascontiguousarray(orders.side, np.int8), f64(orders.price),
        f64(orders.stop), f64(orders.target), i64(funding.ts), i64(funding.market), f64(funding.rate),
        len(bars.markets), floats, ints)
    return ledger_of(lfi, lff, lti, ltf, lei, lef, ai, list(bars.markets))


def ledger_of(lfi, lff, lti, ltf, lei, lef, ai, markets: list[str]) -> Ledger:
    """The Ledger of broker state arrays (``new_state`` / ``step``): views of what was written."""
    n_f, n_t, n_e = int(ai[NF]), int(ai[NT]), int(ai[NE])
    i8 = np.int8
    fills = {"ts": lfi[0, :n_f], "market": lfi[1, :n_f], "kind": lfi[2, :n_f].astype(i8),
             "side": lfi[3, :n_f].astype(i8), "price": lff[0, :n_f], "qty": lff[1, :n_f], "fee": lff[2, :n_f],
             "cash_flow": lff[3, :n_f], "reason": lfi[4, :n_f].astype(i8)}
    size = ltf[2, :n_t]
    entry = ltf[0, :n_t]
    trades = {"market": lti[0, :n_t], "side": lti[1, :n_t].astype(i8), "entry_ts": lti[2, :n_t],
              "entry_price": entry, "exit_ts": lti[3, :n_t], "exit_price": ltf[1, :n_t], "size": size,
              "fees": ltf[3, :n_t], "pnl": ltf[4, :n_t], "return": ltf[4, :n_t] / (size * entry),
              "funding": ltf[5, :n_t], "exit_reason": lti[4, :n_t].astype(i8)}
    equity = {"ts": lei[:n_e], "equity": lef[0, :n_e], "cash": lef[1, :n_e], "exposure": lef[2, :n_e]}
    return Ledger(fills, trades, equity, dict(zip(COUNTERS, ai[C0:].tolist())), list(markets))


@njit(cache=True)
def _slipped(price, direction, qty, volume, slip_bps, slip_vol):
    """Adverse price for a taker fill: up for buys (direction +1), down for sells."""
    frac = slip_bps * 1e-4
    if slip_vol > 0 and volume > 0:
        frac += slip_vol * qty / volume
    return price * (1.0 + direction * frac)


def new_state(n_m: int, n_bars: int, n_orders: int, n_funding: int, cash: float) -> tuple:
    """Fresh broker state for ``step``: (mf, mi, acc, ai, lfi, lff, lti, ltf, lei, lef), ledgers sized for
    ``n_orders`` orders (every entry and exit answers one), ``n_funding`` funding events and ``n_bars`` bars.
    ``ai[LO]``/``ai[HI]`` bound the bars stepped (0, n_bars); ``mi[FINAL]`` is -1 (set each market's last bar)."""
    cap_f = 2 * n_orders + 2 * n_m + n_funding + 8
    cap_t = n_orders + n_m + 8
    mf = np.zeros((MF_ROWS, n_m))
    mf[PSTOP:PTARGET + 1] = np.nan
    mf[LAST] = np.nan
    mf[OSTOP:OTARGET + 1] = np.nan
    mi = np.zeros((MI_ROWS, n_m), np.int64)
    mi[FINAL] = -1
    acc = np.array([cash], np.float64)
    ai = np.zeros(AI_ROWS, np.int64)
    ai[HI] = n_bars
    return (mf, mi, acc, ai, np.empty((5, cap_f), np.int64), np.empty((4, cap_f)), np.empty((5, cap_t), np.int64),
            np.empty((6, cap_t)), np.empty(n_bars + 1, np.int64), np.empty((3, n_bars + 1)))


@njit(cache=True)
def _simulate(bm, bots, bcts, bo, bh, bl, bc, bv, sside, sprice, sstop, starget, fts, fm, frate, n_m,
              floats, ints):
    n = len(bots)
    n_sig = 0  # every entry and exit answers a signal, so they bound the ledger's size
    for i in range(n):
        if sside[i] != 0:
            n_sig += 1
    cap_f = 2 * n_sig + 2 * n_m + len(fts) + 8
    cap_t = n_sig + n_m + 8
    mf = np.zeros((MF_ROWS, n_m))
    for k in range(n_m):
        mf[PSTOP, k] = mf[PTARGET, k] = mf[LAST, k] = np.nan
        mf[OSTOP, k] = mf[OTARGET, k] = np.nan
    mi = np.zeros((MI_ROWS, n_m), np.int64)
    acc = np.empty(1)
    acc[0] = floats[4]
    ai = np.zeros(AI_ROWS, np.int64)
    ai[HI] = n
    lfi = np.empty((5, cap_f), np.int64)
    lff = np.empty((4, cap_f))
    lti = np.empty((5, cap_t), np.int64)
    ltf = np.empty((6, cap_t))
    lei = np.empty(n + 1, np.int64)
    lef = np.empty((3, n + 1))
    for k in range(n_m):
        mi[FINAL, k] = -1
    for i in range(n):  # each market's last bar: its position is closed there
        mi[FINAL, bm[i]] = i
    step(0, n + 1, bm, bots, bcts, bo, bh, bl, bc, bv, sside, sprice, sstop, starget, fts, fm, frate, floats, ints,
         mf, mi, acc, ai, lfi, lff, lti, ltf, lei, lef)
    return lfi, lff, lti, ltf, lei, lef, ai


@njit(cache=True)
def step(i0, i1, bm, bots, bcts, bo, bh, bl, bc, bv, sside, sprice, sstop, starget, fts, fm, frate, floats, ints,
         mf, mi, acc, ai, lfi, lff, lti, ltf, lei, lef):
    """Broker steps ``i0`` .. ``i1 - 1``. Step ``i`` is the close of bar ``i - 1`` (its order, a market ending
    there, the equity row) and then the open and intrabar of bar ``i`` (funding due, a pending exit, a working
    entry, stop and target, the mark at its close). Bars ``ai[LO]`` .. ``ai[HI] - 1`` are traded: steps run
    from LO (only opens) to HI (only closes). State lives in the arrays of ``new_state``; nothing is
    returned. The whole run is ``step(0, n + 1, ...)``; the RL environment steps one bar at a time."""
    fee, maker, slip_bps, slip_vol, cash0, leverage, size_value, offset_bps = floats
    fill_mode, mode, intrabar, entry_kind, entry_bars, size_kind = ints
    n_m = mf.shape[1]
    for i in range(i0, i1):
        if i > ai[LO]:
            j = i - 1
            m = bm[j]
            # 4. the order at this close
            s = sside[j]
            if s != 0:
                ai[C0] += 1
                q_m = mf[QTY, m]
                pos = 0 if q_m == 0 else (1 if q_m > 0 else -1)
                if mi[XPEND, m] != 0:
                    pos = 0
                want_entry = False
                want_exit = False
                o_dir = mi[ODIR, m]
                if s == SIDE_EXIT:  # close what is held, enter nothing
                    if pos != 0:
                        want_exit = True
                    elif o_dir != 0:
                        mi[ODIR, m] = 0
                        ai[C0 + 8] += 1
                    else:
                        ai[C0 + 4] += 1
                elif pos == s or (pos == 0 and o_dir == s):
                    ai[C0 + 3] += 1
                elif mode == 0:  # long-only
                    if s > 0:
                        want_entry = True
                    elif pos > 0:
                        want_exit = True
                    elif o_dir > 0:
                        mi[ODIR, m] = 0
                        ai[C0 + 8] += 1
                    else:
                        ai[C0 + 4] += 1
                elif mode == 1:  # short-only
                    if s < 0:
                        want_entry = True
                    elif pos < 0:
                        want_exit = True
                    elif o_dir < 0:
                        mi[ODIR, m] = 0
                        ai[C0 + 8] += 1
                    else:
                        ai[C0 + 4] += 1
                else:  # long-short: against the position reverses it
                    want_entry = True
                    want_exit = pos != 0
                    if o_dir != 0:
                        mi[ODIR, m] = 0
                        ai[C0 + 8] += 1
                if want_exit:
                    if fill_mode == 1:
                        d = -1 if mf[QTY, m] > 0 else 1
                        px = _slipped(bc[j], d, abs(mf[QTY, m]), bv[j], slip_bps, slip_vol)
                        _close(m, bcts[j], px, fee, R_SIGNAL, mf, mi, acc, ai, lfi, lff, lti, ltf)
                        ai[C0 + 2] += 1
                    else:
                        mi[XPEND, m] = 1
                if want_entry:
                    mf[OSTOP, m], mf[OTARGET, m] = sstop[j], starget[j]
                    if size_kind == 3 and not (sstop[j] == sstop[j]):
                        ai[C0 + 6] += 1
                    elif entry_kind == 0 and fill_mode == 1:  # market at this close
                        eq, gross = _marked(acc[0], mf)
                        q = _size(size_kind, size_value, leverage, eq, gross, bc[j], sstop[j])
                        px = _slipped(bc[j], s, q, bv[j], slip_bps, slip_vol) if q > 0 else bc[j]
                        q = _size(size_kind, size_value, leverage, eq, gross, px, sstop[j])
                        if q > 0:
                            _open(m, s, q, bcts[j], px, fee, mf, mi, acc, ai, lfi, lff)
                            mf[PSTOP, m], mf[PTARGET, m] = sstop[j], starget[j]
                            mi[FRESH, m] = 0
                            ai[C0 + 1] += 1
                        else:
                            ai[C0 + 5] += 1
                    else:
                        mi[ODIR, m] = s
                        mi[OLEFT, m] = entry_bars
                        off = offset_bps * 1e-4
                        if entry_kind == 1:
                            mf[OLEVEL, m] = sprice[j] * (1.0 - s * off)
                        else:
                            mf[OLEVEL, m] = sprice[j] * (1.0 + s * off)
            # a market whose data ends here: close what it holds at this close (reason end), pending orders lapse
            if j == mi[FINAL, m]:
                mi[ODIR, m] = 0
                mi[XPEND, m] = 0
                if mf[QTY, m] != 0:
                    d = -1 if mf[QTY, m] > 0 else 1
                    px = _slipped(bc[j], d, abs(mf[QTY, m]), 0.0, slip_bps, 0.0)
                    _close(m, bcts[j], px, fee, R_END, mf, mi, acc, ai, lfi, lff, lti, ltf)
                    ai[C0 + 2] += 1
            # 5. equity at each distinct close time (after the last bar of that time)
            if j == ai[HI] - 1 or bcts[j + 1] != bcts[j]:
                cash = acc[0]
                eq = cash
                gross = 0.0
                for k in range(n_m):
                    qk = mf[QTY, k]
                    if qk != 0:
                        eq += qk * mf[LAST, k]
                        gross += abs(qk * mf[LAST, k])
                n_e = ai[NE]
                lei[n_e], lef[0, n_e], lef[1, n_e] = bcts[j], eq, cash
                lef[2, n_e] = gross / eq if eq > 0 else np.nan
                ai[NE] = n_e + 1
        if i >= ai[HI]:
            break
        m = bm[i]
        # funding due by this bar's open, for positions held then
        fi = ai[FI]
        while fi < len(fts) and fts[fi] <= bots[i]:
            fmk = fm[fi]
            if mf[QTY, fmk] != 0 and mf[LAST, fmk] == mf[LAST, fmk]:
                pay = mf[QTY, fmk] * mf[LAST, fmk] * frate[fi]
                acc[0] -= pay
                mf[EFUND, fmk] += pay
                n_f = ai[NF]
                lfi[0, n_f], lfi[1, n_f], lfi[2, n_f], lfi[3, n_f], lfi[4, n_f] = fts[fi], fmk, KIND_FUNDING, 0, R_FUNDING
                lff[0, n_f], lff[1, n_f], lff[2, n_f], lff[3, n_f] = mf[LAST, fmk], abs(mf[QTY, fmk]), 0.0, -pay
                ai[NF] = n_f + 1
                ai[C0 + 9] += 1
            fi += 1
        ai[FI] = fi
        equity_now, gross = _marked(acc[0], mf)
        # 1. a pending exit at this open
        if mi[XPEND, m] != 0:
            mi[XPEND, m] = 0
            if mf[QTY, m] != 0:
                d = -1 if mf[QTY, m] > 0 else 1
                px = _slipped(bo[i], d, abs(mf[QTY, m]), bv[i], slip_bps, slip_vol)
                _close(m, bots[i], px, fee, R_SIGNAL, mf, mi, acc, ai, lfi, lff, lti, ltf)
                ai[C0 + 2] += 1
                equity_now, gross = _marked(acc[0], mf)
        mi[FRESH, m] = 0
        # 2. a working entry
        if mi[ODIR, m] != 0 and mf[QTY, m] == 0:
            d = mi[ODIR, m]
            px = np.nan
            at_open = False
            maker_fill = False
            if entry_kind == 0:  # market at this open
                px, at_open = bo[i], True
            elif entry_kind == 1:  # limit
                lvl = mf[OLEVEL, m]
                if d > 0 and bl[i] <= lvl:
                    px, at_open = min(bo[i], lvl), bo[i] <= lvl
                    maker_fill = True
                elif d < 0 and bh[i] >= lvl:
                    px, at_open = max(bo[i], lvl), bo[i] >= lvl
                    maker_fill = True
            else:  # stop entry
                lvl = mf[OLEVEL, m]
                if d > 0 and bh[i] >= lvl:
                    px, at_open = max(bo[i], lvl), bo[i] >= lvl
                elif d < 0 and bl[i] <= lvl:
                    px, at_open = min(bo[i], lvl), bo[i] <= lvl
            if px == px:
                q = _size(size_kind, size_value, leverage, equity_now, gross, px, mf[OSTOP, m])
                if q > 0 and not maker_fill:
                    px = _slipped(px, d, q, bv[i], slip_bps, slip_vol)
                    q = _size(size_kind, size_value, leverage, equity_now, gross, px, mf[OSTOP, m])
                if q > 0:
                    _open(m, d, q, bots[i], px, maker if maker_fill else fee, mf, mi, acc, ai, lfi, lff)
                    mf[PSTOP, m], mf[PTARGET, m] = mf[OSTOP, m], mf[OTARGET, m]
                    mi[FRESH, m] = 0 if at_open else 1
                    ai[C0 + 1] += 1
                else:
                    ai[C0 + 5] += 1
                mi[ODIR, m] = 0
            else:
                mi[OLEFT, m] -= 1
                if mi[OLEFT, m] <= 0:
                    mi[ODIR, m] = 0
                    ai[C0 + 7] += 1
        # 3. stop and target of the open position
        if mf[QTY, m] != 0:
            long = mf[QTY, m] > 0
            fresh = mi[FRESH, m] != 0
            st, tg = mf[PSTOP, m], mf[PTARGET, m]
            if fresh:
                tg = np.nan
            px = np.nan
            why = 0
            if long:
                if st == st and bo[i] <= st and not fresh:
                    px, why = bo[i], R_STOP
                elif tg == tg and bo[i] >= tg:
                    px, why = bo[i], R_TARGET
                else:
                    hs = st == st and bl[i] <= st
                    ht = tg == tg and bh[i] >= tg
                    if hs and ht:
                        if intrabar == 0:
                            px, why = st, R_STOP
                        elif intrabar == 1:
                            px, why = tg, R_TARGET
                        elif bc[i] >= bo[i]:  # up bar: the low comes first
                            px, why = st, R_STOP
                        else:
                            px, why = tg, R_TARGET
                    elif hs:
                        px, why = st, R_STOP
                    elif ht:
                        px, why = tg, R_TARGET
            else:
                if st == st and bo[i] >= st and not fresh:
                    px, why = bo[i], R_STOP
                elif tg == tg and bo[i] <= tg:
                    px, why = bo[i], R_TARGET
                else:
                    hs = st == st and bh[i] >= st
                    ht = tg == tg and bl[i] <= tg
                    if hs and ht:
                        if intrabar == 0:
                            px, why = st, R_STOP
                        elif intrabar == 1:
                            px, why = tg, R_TARGET
                        elif bc[i] >= bo[i]:  # up bar: the low (the target) comes first
                            px, why = tg, R_TARGET
                        else:
                            px, why = st, R_STOP
                    elif hs:
                        px, why = st, R_STOP
                    elif ht:
                        px, why = tg, R_TARGET
            if px == px:
                rate = fee
                if why == R_STOP:
                    px = _slipped(px, -1 if long else 1, abs(mf[QTY, m]), bv[i], slip_bps, slip_vol)
                else:
                    rate = maker
                _close(m, bots[i], px, rate, why, mf, mi, acc, ai, lfi, lff, lti, ltf)
                ai[C0 + 2] += 1
                mi[XPEND, m] = 0
        mf[LAST, m] = bc[i]
        mi[LAST_TS, m] = bcts[i]


@njit(cache=True)
def _marked(cash, mf):
    """Equity (cash plus positions at their last close) and gross notional held."""
    eq = cash
    gross = 0.0
    for k in range(mf.shape[1]):
        qk = mf[QTY, k]
        if qk != 0:
            eq += qk * mf[LAST, k]
            gross += abs(qk * mf[LAST, k])
    return eq, gross


@njit(cache=True)
def _size(kind, value, leverage, equity, gross, price, stop):
    """Units to trade at ``price``, within ``leverage`` x equity of gross notional (``gross`` already held);
    0 when there is no equity or no usable stop for risk sizing."""
    if not (equity > 0) or not (price > 0):
        return 0.0
    if kind == 0:
        q = value
    elif kind == 1:
        q = value / price
    elif kind == 2:
        q = value * equity / price
    else:
        dist = abs(price - stop)
        if not (dist > 0):
            return 0.0
        q = value * equity / dist
    cap = (leverage * equity - gross) / price
    if not cap > 0:
        return 0.0
    return q if q <= cap else cap


@njit(cache=True)
def _open(m, d, q, ts, px, rate, mf, mi, acc, ai, lfi, lff):
    fee_paid = q * px * rate
    flow = -d * q * px - fee_paid
    acc[0] += flow
    mf[QTY, m] = d * q
    mf[EPRICE, m], mi[ETS, m], mf[EFEE, m], mf[EFUND, m] = px, ts, fee_paid, 0.0
    n_f = ai[NF]
    lfi[0, n_f], lfi[1, n_f], lfi[2, n_f], lfi[3, n_f], lfi[4, n_f] = ts, m, KIND_FILL, d, R_ENTRY
    lff[0, n_f], lff[1, n_f], lff[2, n_f], lff[3, n_f] = px, q, fee_paid, flow
    ai[NF] = n_f + 1


@njit(cache=True)
def _close(m, ts, px, rate, why, mf, mi, acc, ai, lfi, lff, lti, ltf):
    q = mf[QTY, m]
    size = abs(q)
    d = 1 if q > 0 else -1
    fee_paid = size * px * rate
    flow = q * px - fee_paid
    acc[0] += flow
    n_f = ai[NF]
    lfi[0, n_f], lfi[1, n_f], lfi[2, n_f], lfi[3, n_f], lfi[4, n_f] = ts, m, KIND_FILL, -d, why
    lff[0, n_f], lff[1, n_f], lff[2, n_f], lff[3, n_f] = px, size, fee_paid, flow
    ai[NF] = n_f + 1
    fees = mf[EFEE, m] + fee_paid
    n_t = ai[NT]
    lti[0, n_t], lti[1, n_t], lti[2, n_t], lti[3, n_t], lti[4, n_t] = m, d, mi[ETS, m], ts, why
    ltf[0, n_t], ltf[1, n_t], ltf[2, n_t], ltf[3, n_t] = mf[EPRICE, m], px, size, fees
    ltf[4, n_t] = d * size * (px - mf[EPRICE, m]) - fees
    ltf[5, n_t] = mf[EFUND, m]
    ai[NT] = n_t + 1
    mf[QTY, m] = 0.0
