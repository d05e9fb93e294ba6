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

    side: np.ndarray  # int8: +1 buy, -1 sell, 0 none
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
    out = _simulate(i64(bars.market), i64(bars.open_ts), i64(bars.close_ts), f64(bars.open), f64(bars.high),
                    f64(bars.low), f64(bars.close), f64(bars.volume), np.ascontiguousarray(orders.side, np.int8),
                    f64(orders.price), f64(orders.stop), f64(orders.target), i64(funding.ts), i64(funding.market),
                    f64(funding.rate), len(bars.markets), floats, ints)
    (f_ts, f_m, f_kind, f_side, f_price, f_qty, f_fee, f_cash, f_reason, n_f,
     t_m, t_side, t_ets, t_ep, t_xts, t_xp, t_size, t_fees, t_pnl, t_fund, t_reason, n_t,
     e_ts, e_eq, e_cash, e_exp, n_e, counters) = out
    fills = {"ts": f_ts[:n_f], "market": f_m[:n_f], "kind": f_kind[:n_f], "side": f_side[:n_f],
             "price": f_price[:n_f], "qty": f_qty[:n_f], "fee": f_fee[:n_f], "cash_flow": f_cash[:n_f],
             "reason": f_reason[:n_f]}
    size = t_size[:n_t]
    entry = t_ep[:n_t]
    trades = {"market": t_m[:n_t], "side": t_side[:n_t], "entry_ts": t_ets[:n_t], "entry_price": entry,
              "exit_ts": t_xts[:n_t], "exit_price": t_xp[:n_t], "size": size, "fees": t_fees[:n_t],
              "pnl": t_pnl[:n_t], "return": t_pnl[:n_t] / (size * entry), "funding": t_fund[:n_t],
              "exit_reason": t_reason[:n_t]}
    equity = {"ts": e_ts[:n_e], "equity": e_eq[:n_e], "cash": e_cash[:n_e], "exposure": e_exp[:n_e]}
    return Ledger(fills, trades, equity, dict(zip(COUNTERS, counters.tolist())), list(bars.markets))


@njit(cache=True)
def _slipped(price, direction, qty, volume, slip_bps, slip_vol):
    """Adverse price for a taker fill: up for buys (direction +1), down for sells."""
    frac = slip_bps * 1e-4
    if slip_vol > 0 and volume > 0:
        frac += slip_vol * qty / volume
    return price * (1.0 + direction * frac)


@njit(cache=True)
def _simulate(bm, bots, bcts, bo, bh, bl, bc, bv, sside, sprice, sstop, starget, fts, fm, frate, n_m,
              floats, ints):
    fee, maker, slip_bps, slip_vol, cash0, leverage, size_value, offset_bps = floats
    fill_mode, mode, intrabar, entry_kind, entry_bars, size_kind = ints
    n = len(bots)
    n_sig = 0  # every entry and exit answers a signal, so they bound the ledger's size
    for i in range(n):
        if sside[i] != 0:
            n_sig += 1
    cap_f = 2 * n_sig + 2 * n_m + len(fts) + 8
    f_ts = np.empty(cap_f, np.int64)
    f_m = np.empty(cap_f, np.int64)
    f_kind = np.empty(cap_f, np.int8)
    f_side = np.empty(cap_f, np.int8)
    f_price = np.empty(cap_f)
    f_qty = np.empty(cap_f)
    f_fee = np.empty(cap_f)
    f_cash = np.empty(cap_f)
    f_reason = np.empty(cap_f, np.int8)
    cap_t = n_sig + n_m + 8
    t_m = np.empty(cap_t, np.int64)
    t_side = np.empty(cap_t, np.int8)
    t_ets = np.empty(cap_t, np.int64)
    t_ep = np.empty(cap_t)
    t_xts = np.empty(cap_t, np.int64)
    t_xp = np.empty(cap_t)
    t_size = np.empty(cap_t)
    t_fees = np.empty(cap_t)
    t_pnl = np.empty(cap_t)
    t_fund = np.empty(cap_t)
    t_reason = np.empty(cap_t, np.int8)
    e_ts = np.empty(n + 1, np.int64)
    e_eq = np.empty(n + 1)
    e_cash = np.empty(n + 1)
    e_exp = np.empty(n + 1)
    counters = np.zeros(10, np.int64)
    # per market: position, its entry, its exits, a working order
    qty = np.zeros(n_m)  # signed units
    e_price = np.zeros(n_m)
    e_ts_m = np.zeros(n_m, np.int64)
    e_fee = np.zeros(n_m)
    e_fund = np.zeros(n_m)
    p_stop = np.full(n_m, np.nan)
    p_target = np.full(n_m, np.nan)
    fresh = np.zeros(n_m, np.bool_)  # filled inside the current bar: only the stop is checked there
    last = np.full(n_m, np.nan)  # last close
    last_ts = np.zeros(n_m, np.int64)
    o_dir = np.zeros(n_m, np.int64)  # working entry: +1/-1, 0 none
    o_level = np.zeros(n_m)
    o_left = np.zeros(n_m, np.int64)
    o_stop = np.full(n_m, np.nan)
    o_target = np.full(n_m, np.nan)
    x_pending = np.zeros(n_m, np.bool_)  # close the position at the next open
    cash = cash0
    n_f = 0
    n_t = 0
    n_e = 0
    fi = 0  # next funding event
    final = np.full(n_m, -1, np.int64)  # each market's last bar: its position is closed there
    for i in range(n):
        final[bm[i]] = i
    for i in range(n):
        m = bm[i]
        # funding due by this bar's open, for positions held then
        while fi < len(fts) and fts[fi] <= bots[i]:
            fmk = fm[fi]
            if qty[fmk] != 0 and last[fmk] == last[fmk]:
                pay = qty[fmk] * last[fmk] * frate[fi]
                cash -= pay
                e_fund[fmk] += pay
                f_ts[n_f], f_m[n_f], f_kind[n_f], f_side[n_f] = fts[fi], fmk, KIND_FUNDING, 0
                f_price[n_f], f_qty[n_f], f_fee[n_f], f_cash[n_f], f_reason[n_f] = last[fmk], abs(qty[fmk]), 0.0, -pay, R_FUNDING
                n_f += 1
                counters[9] += 1
            fi += 1
        equity_now, gross = _marked(cash, qty, last)
        # 1. a pending exit at this open
        if x_pending[m]:
            x_pending[m] = False
            if qty[m] != 0:
                d = -1 if qty[m] > 0 else 1
                px = _slipped(bo[i], d, abs(qty[m]), bv[i], slip_bps, slip_vol)
                n_f, n_t, cash = _close(m, bots[i], px, fee, R_SIGNAL, qty, e_price, e_ts_m, e_fee, e_fund, cash,
                                        f_ts, f_m, f_kind, f_side, f_price, f_qty, f_fee, f_cash, f_reason, n_f,
                                        t_m, t_side, t_ets, t_ep, t_xts, t_xp, t_size, t_fees, t_pnl, t_fund,
                                        t_reason, n_t)
                counters[2] += 1
                equity_now, gross = _marked(cash, qty, last)
        fresh[m] = False
        # 2. a working entry
        if o_dir[m] != 0 and qty[m] == 0:
            d = o_dir[m]
            px = np.nan
            at_open = False
            maker_fill = False
            if entry_kind == 0:  # market at this open
                px, at_open = bo[i], True
            elif entry_kind == 1:  # limit
                lvl = o_level[m]
                if d > 0 and bl[i] <= lvl:
                    px, at_open = min(bo[i], lvl), bo[i] <= lvl
                    maker_fill = True
                elif d < 0 and bh[i] >= lvl:
                    px, at_open = max(bo[i], lvl), bo[i] >= lvl
                    maker_fill = True
            else:  # stop entry
                lvl = o_level[m]
                if d > 0 and bh[i] >= lvl:
                    px, at_open = max(bo[i], lvl), bo[i] >= lvl
                elif d < 0 and bl[i] <= lvl:
                    px, at_open = min(bo[i], lvl), bo[i] <= lvl
            if px == px:
                q = _size(size_kind, size_value, leverage, equity_now, gross, px, o_stop[m])
                if q > 0 and not maker_fill:
                    px = _slipped(px, d, q, bv[i], slip_bps, slip_vol)
                    q = _size(size_kind, size_value, leverage, equity_now, gross, px, o_stop[m])
                if q > 0:
                    n_f, cash = _open(m, d, q, bots[i], px, maker if maker_fill else fee, qty, e_price, e_ts_m, e_fee,
                                      e_fund, cash, f_ts, f_m, f_kind, f_side, f_price, f_qty, f_fee, f_cash,
                                      f_reason, n_f)
                    p_stop[m], p_target[m] = o_stop[m], o_target[m]
                    fresh[m] = not at_open
                    counters[1] += 1
                else:
                    counters[5] += 1
                o_dir[m] = 0
            else:
                o_left[m] -= 1
                if o_left[m] <= 0:
                    o_dir[m] = 0
                    counters[7] += 1
        # 3. stop and target of the open position
        if qty[m] != 0:
            long = qty[m] > 0
            st, tg = p_stop[m], p_target[m]
            if fresh[m]:
                tg = np.nan
            px = np.nan
            why = 0
            if long:
                if st == st and bo[i] <= st and not fresh[m]:
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
                if st == st and bo[i] >= st and not fresh[m]:
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
                    px = _slipped(px, -1 if long else 1, abs(qty[m]), bv[i], slip_bps, slip_vol)
                else:
                    rate = maker
                n_f, n_t, cash = _close(m, bots[i], px, rate, why, qty, e_price, e_ts_m, e_fee, e_fund, cash,
                                        f_ts, f_m, f_kind, f_side, f_price, f_qty, f_fee, f_cash, f_reason, n_f,
                                        t_m, t_side, t_ets, t_ep, t_xts, t_xp, t_size, t_fees, t_pnl, t_fund,
                                        t_reason, n_t)
                counters[2] += 1
                x_pending[m] = False
        last[m] = bc[i]
        last_ts[m] = bcts[i]
        # 4. the signal at this close
        s = sside[i]
        if s != 0:
            counters[0] += 1
            pos = 0 if qty[m] == 0 else (1 if qty[m] > 0 else -1)
            if x_pending[m]:
                pos = 0
            want_entry = False
            want_exit = False
            if pos == s or (pos == 0 and o_dir[m] == s):
                counters[3] += 1
            elif mode == 0:  # long-only
                if s > 0:
                    want_entry = True
                elif pos > 0:
                    want_exit = True
                elif o_dir[m] > 0:
                    o_dir[m] = 0
                    counters[8] += 1
                else:
                    counters[4] += 1
            elif mode == 1:  # short-only
                if s < 0:
                    want_entry = True
                elif pos < 0:
                    want_exit = True
                elif o_dir[m] < 0:
                    o_dir[m] = 0
                    counters[8] += 1
                else:
                    counters[4] += 1
            else:  # long-short: against the position reverses it
                want_entry = True
                want_exit = pos != 0
                if o_dir[m] != 0:
                    o_dir[m] = 0
                    counters[8] += 1
            if want_exit:
                if fill_mode == 1:
                    d = -1 if qty[m] > 0 else 1
                    px = _slipped(bc[i], d, abs(qty[m]), bv[i], slip_bps, slip_vol)
                    n_f, n_t, cash = _close(m, bcts[i], px, fee, R_SIGNAL, qty, e_price, e_ts_m, e_fee, e_fund,
                                            cash, f_ts, f_m, f_kind, f_side, f_price, f_qty, f_fee, f_cash,
                                            f_reason, n_f, t_m, t_side, t_ets, t_ep, t_xts, t_xp, t_size, t_fees,
                                            t_pnl, t_fund, t_reason, n_t)
                    counters[2] += 1
                else:
                    x_pending[m] = True
            if want_entry:
                o_stop[m], o_target[m] = sstop[i], starget[i]
                if size_kind == 3 and not (sstop[i] == sstop[i]):
                    counters[6] += 1
                elif entry_kind == 0 and fill_mode == 1:  # market at this close
                    eq, gross = _marked(cash, qty, last)
                    q = _size(size_kind, size_value, leverage, eq, gross, bc[i], sstop[i])
                    px = _slipped(bc[i], s, q, bv[i], slip_bps, slip_vol) if q > 0 else bc[i]
                    q = _size(size_kind, size_value, leverage, eq, gross, px, sstop[i])
                    if q > 0:
                        n_f, cash = _open(m, s, q, bcts[i], px, fee, qty, e_price, e_ts_m, e_fee, e_fund, cash,
                                          f_ts, f_m, f_kind, f_side, f_price, f_qty, f_fee, f_cash, f_reason, n_f)
                        p_stop[m], p_target[m] = sstop[i], starget[i]
                        fresh[m] = False
                        counters[1] += 1
                    else:
                        counters[5] += 1
                else:
                    o_dir[m] = s
                    o_left[m] = entry_bars
                    off = offset_bps * 1e-4
                    if entry_kind == 1:
                        o_level[m] = sprice[i] * (1.0 - s * off)
                    else:
                        o_level[m] = sprice[i] * (1.0 + s * off)
        # a market whose data ends here: close what it holds at this close (reason end), pending orders lapse
        if i == final[m]:
            o_dir[m] = 0
            x_pending[m] = False
            if qty[m] != 0:
                d = -1 if qty[m] > 0 else 1
                px = _slipped(bc[i], d, abs(qty[m]), 0.0, slip_bps, 0.0)
                n_f, n_t, cash = _close(m, bcts[i], px, fee, R_END, qty, e_price, e_ts_m, e_fee, e_fund, cash,
                                        f_ts, f_m, f_kind, f_side, f_price, f_qty, f_fee, f_cash, f_reason, n_f,
                                        t_m, t_side, t_ets, t_ep, t_xts, t_xp, t_size, t_fees, t_pnl, t_fund,
                                        t_reason, n_t)
                counters[2] += 1
        # 5. equity at each distinct close time (after the last bar of that time)
        if i == n - 1 or bcts[i + 1] != bcts[i]:
            eq = cash
            gross = 0.0
            for k in range(n_m):
                if qty[k] != 0:
                    eq += qty[k] * last[k]
                    gross += abs(qty[k] * last[k])
            e_ts[n_e], e_eq[n_e], e_cash[n_e] = bcts[i], eq, cash
            e_exp[n_e] = gross / eq if eq > 0 else np.nan
            n_e += 1
    return (f_ts, f_m, f_kind, f_side, f_price, f_qty, f_fee, f_cash, f_reason, n_f,
            t_m, t_side, t_ets, t_ep, t_xts, t_xp, t_size, t_fees, t_pnl, t_fund, t_reason, n_t,
            e_ts, e_eq, e_cash, e_exp, n_e, counters)


@njit(cache=True)
def _marked(cash, qty, last):
    """Equity (cash plus positions at their last close) and gross notional held."""
    eq = cash
    gross = 0.0
    for k in range(len(qty)):
        if qty[k] != 0:
            eq += qty[k] * last[k]
            gross += abs(qty[k] * last[k])
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
def _open(m, d, q, ts, px, rate, qty, e_price, e_ts_m, e_fee, e_fund, cash, f_ts, f_m, f_kind, f_side, f_price,
          f_qty, f_fee, f_cash, f_reason, n_f):
    fee_paid = q * px * rate
    flow = -d * q * px - fee_paid
    cash += flow
    qty[m] = d * q
    e_price[m], e_ts_m[m], e_fee[m], e_fund[m] = px, ts, fee_paid, 0.0
    f_ts[n_f], f_m[n_f], f_kind[n_f], f_side[n_f] = ts, m, KIND_FILL, d
    f_price[n_f], f_qty[n_f], f_fee[n_f], f_cash[n_f], f_reason[n_f] = px, q, fee_paid, flow, R_ENTRY
    return n_f + 1, cash


@njit(cache=True)
def _close(m, ts, px, rate, why, qty, e_price, e_ts_m, e_fee, e_fund, cash, f_ts, f_m, f_kind, f_side, f_price,
           f_qty, f_fee, f_cash, f_reason, n_f, t_m, t_side, t_ets, t_ep, t_xts, t_xp, t_size, t_fees, t_pnl,
           t_fund, t_reason, n_t):
    q = qty[m]
    size = abs(q)
    d = 1 if q > 0 else -1
    fee_paid = size * px * rate
    flow = q * px - fee_paid
    cash += flow
    f_ts[n_f], f_m[n_f], f_kind[n_f], f_side[n_f] = ts, m, KIND_FILL, -d
    f_price[n_f], f_qty[n_f], f_fee[n_f], f_cash[n_f], f_reason[n_f] = px, size, fee_paid, flow, why
    n_f += 1
    fees = e_fee[m] + fee_paid
    t_m[n_t], t_side[n_t], t_ets[n_t], t_ep[n_t] = m, d, e_ts_m[m], e_price[m]
    t_xts[n_t], t_xp[n_t], t_size[n_t], t_fees[n_t] = ts, px, size, fees
    t_pnl[n_t] = d * size * (px - e_price[m]) - fees
    t_fund[n_t], t_reason[n_t] = e_fund[m], why
    qty[m] = 0.0
    return n_f, n_t + 1, cash
