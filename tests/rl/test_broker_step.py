"""The broker's explicit exit order (side 2) and its step form, on hand-made bars."""

from __future__ import annotations

import numpy as np

from engine.backtest import broker
from engine.backtest.broker import REASONS, SIDE_EXIT, Bars, Orders, ledger_of, new_state, simulate, step_params
from engine.backtest.settings import BacktestSettings, Size

M = 60 * 10**9


def bars(closes) -> Bars:
    c = np.asarray(closes, float)
    n = len(c)
    o = np.concatenate([[c[0]], c[:-1]]) + 0.5
    ts = np.arange(n, dtype=np.int64) * M
    return Bars(np.zeros(n, np.int64), ts, ts + M, o, np.maximum(o, c) + 1, np.minimum(o, c) - 1, c,
                np.full(n, 1e6), ["X"])


def orders(n, at: dict[int, int]) -> Orders:
    o = Orders.none(n)
    for i, s in at.items():
        o.side[i] = s
    return o


def settings(**kw) -> BacktestSettings:
    kw.setdefault("fee", 0.0)
    kw.setdefault("size", Size("fixed", 1.0))
    return BacktestSettings(**kw)


def test_exit_closes_a_long_short_position_at_the_next_open_without_reversing() -> None:
    b = bars([100, 101, 102, 103, 104, 105])
    led = simulate(b, orders(6, {0: 1, 2: SIDE_EXIT}), settings(mode="long-short"))
    t = led.trades
    assert len(t["pnl"]) == 1 and REASONS[t["exit_reason"][0]] == "signal"
    assert t["entry_price"][0] == b.open[1] and t["exit_price"][0] == b.open[3] and t["exit_ts"][0] == b.open_ts[3]
    assert led.counters["entries"] == 1 and led.counters["exits"] == 1
    # a sell there instead reverses: two trades, the second closed at the end
    rev = simulate(b, orders(6, {0: 1, 2: -1}), settings(mode="long-short"))
    assert len(rev.trades["pnl"]) == 2 and REASONS[rev.trades["exit_reason"][1]] == "end"


def test_exit_when_flat_is_ignored_and_cancels_a_working_entry() -> None:
    b = bars([100, 101, 102, 103, 104, 105])
    led = simulate(b, orders(6, {1: SIDE_EXIT}), settings(mode="long-short"))
    assert len(led.trades["pnl"]) == 0 and led.counters["ignored_no_position"] == 1
    # a limit entry far below the market works for 3 bars; the exit cancels it
    s = settings(mode="long-short", entry="limit", entry_offset_bps=500, entry_bars=3)
    led = simulate(b, orders(6, {0: 1, 1: SIDE_EXIT}), s)
    assert led.counters["cancelled_orders"] == 1 and led.counters["entries"] == 0


def test_exit_with_close_fills_at_that_close_in_every_mode() -> None:
    b = bars([100, 101, 102, 103, 104, 105])
    for mode, side in (("long-only", 1), ("short-only", -1), ("long-short", -1)):
        led = simulate(b, orders(6, {0: side, 3: SIDE_EXIT}), settings(mode=mode, fill="close"))
        t = led.trades
        assert len(t["pnl"]) == 1 and t["exit_price"][0] == b.close[3] and t["exit_ts"][0] == b.close_ts[3]


def test_stepping_one_bar_at_a_time_books_what_the_whole_run_books() -> None:
    rng = np.random.default_rng(3)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 300)))
    b = bars(closes)
    o = orders(300, {int(i): int(rng.choice([1, -1, SIDE_EXIT])) for i in rng.choice(300, 60, replace=False)})
    s = settings(mode="long-short", fee=0.001, slippage_bps=2.0, size=Size("equity", 0.5))
    whole = simulate(b, o, s)
    state = new_state(1, len(b), int((o.side != 0).sum()), 0, s.cash)
    state[1][broker.FINAL, 0] = len(b) - 1
    floats, ints = step_params(s)
    e_i, e_f = np.empty(0, np.int64), np.empty(0)
    args = (b.market, b.open_ts, b.close_ts, b.open, b.high, b.low, b.close, b.volume, o.side, o.price, o.stop,
            o.target, e_i, e_i, e_f, floats, ints, *state)
    for i in range(len(b) + 1):
        broker.step(i, i + 1, *args)
    stepped = ledger_of(*state[4:], state[3], ["X"])
    for part in ("fills", "trades", "equity"):
        for k, v in getattr(whole, part).items():
            assert np.array_equal(v, getattr(stepped, part)[k], equal_nan=True), (part, k)
    assert whole.counters == stepped.counters
