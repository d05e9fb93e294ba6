"""The broker's rules on small hand-made bars: fills, exits, intrabar order, fees, sizing, funding, equity."""

from __future__ import annotations

import numpy as np
import pytest

from engine.backtest.broker import REASONS, Bars, Funding, Orders, simulate
from engine.backtest.settings import BacktestSettings, Size

M = 60 * 10**9  # one-minute bars


def bars(ohlc: list[tuple[float, float, float, float]], market: int = 0, markets=("X",)) -> Bars:
    n = len(ohlc)
    o, h, lo, c = (np.array([r[i] for r in ohlc], float) for i in range(4))
    ts = np.arange(n, dtype=np.int64) * M
    return Bars(np.full(n, market, np.int64), ts, ts + M, o, h, lo, c, np.full(n, 1000.0), list(markets))


def orders(n: int, at: dict[int, tuple]) -> Orders:
    """at: bar -> (side, price, stop, target)."""
    o = Orders.none(n)
    for i, (side, price, stop, target) in at.items():
        o.side[i], o.price[i], o.stop[i], o.target[i] = side, price, stop, target
    return o


def run(b: Bars, o: Orders, **kw):
    kw.setdefault("fee", 0.0)
    kw.setdefault("size", Size("fixed", 1.0))
    return simulate(b, o, BacktestSettings(**kw))


FLAT = (100.0, 101.0, 99.0, 100.0)


def reason(ledger, i: int = 0) -> str:
    return REASONS[ledger.trades["exit_reason"][i]]


def test_market_entry_fills_at_the_next_open_and_the_stop_wins_when_a_bar_touches_both() -> None:
    b = bars([FLAT, (100.5, 101, 100, 100.5), (100, 112, 90, 99), FLAT])
    led = run(b, orders(4, {0: (1, 100.0, 95.0, 110.0)}))
    t = led.trades
    assert t["entry_ts"][0] == 1 * M and t["entry_price"][0] == 100.5
    assert reason(led) == "stop" and t["exit_price"][0] == 95.0 and t["exit_ts"][0] == 2 * M
    assert run(b, orders(4, {0: (1, 100.0, 95.0, 110.0)}), intrabar="target").trades["exit_price"][0] == 110.0
    # ohlc path: a down bar goes open -> high -> low, so the target comes first
    assert reason(run(b, orders(4, {0: (1, 100.0, 95.0, 110.0)}), intrabar="ohlc")) == "target"
    up = bars([FLAT, (100.5, 101, 100, 100.5), (100, 112, 90, 105), FLAT])
    assert reason(run(up, orders(4, {0: (1, 100.0, 95.0, 110.0)}), intrabar="ohlc")) == "stop"


def test_a_gap_through_the_stop_fills_at_the_open() -> None:
    b = bars([FLAT, FLAT, (90, 92, 88, 91), FLAT])
    led = run(b, orders(4, {0: (1, 100.0, 95.0, np.nan)}))
    assert reason(led) == "stop" and led.trades["exit_price"][0] == 90.0


def test_limit_entry_fills_at_the_better_of_open_and_limit_with_the_maker_fee() -> None:
    b = bars([FLAT, (100.5, 101, 98.5, 99), (97, 99, 96, 98), FLAT])
    led = run(b, orders(4, {0: (1, 100.0, np.nan, np.nan)}), entry="limit", entry_offset_bps=100, entry_bars=2,
              fee=0.002, maker_fee=0.0005)
    f = led.fills
    assert f["price"][0] == pytest.approx(99.0) and f["ts"][0] == 1 * M  # limit 99 reached inside bar 1
    assert f["fee"][0] == pytest.approx(99.0 * 0.0005)
    expired = run(bars([FLAT, FLAT, FLAT]), orders(3, {0: (1, 100.0, np.nan, np.nan)}), entry="limit",
                  entry_offset_bps=500)
    assert expired.counters["expired_orders"] == 1 and not len(expired.trades["pnl"])


def test_fees_pnl_return_and_equity_are_exact() -> None:
    b = bars([FLAT, (100, 101, 99, 100), FLAT, (110, 111, 109, 110), (110, 110, 110, 110)])
    o = orders(5, {0: (1, 100.0, np.nan, np.nan), 2: (-1, 100.0, np.nan, np.nan)})
    led = run(b, o, fee=0.001, size=Size("fixed", 2.0), slippage_bps=10)
    t = led.trades
    entry, exit_ = 100 * 1.001, 110 * 0.999  # 10 bps slippage against us on both legs
    fees = 2 * entry * 0.001 + 2 * exit_ * 0.001
    assert t["entry_price"][0] == pytest.approx(entry) and t["exit_price"][0] == pytest.approx(exit_)
    assert t["fees"][0] == pytest.approx(fees)
    assert t["pnl"][0] == pytest.approx(2 * (exit_ - entry) - fees)
    assert t["return"][0] == pytest.approx(t["pnl"][0] / (2 * entry))
    eq = led.equity
    assert eq["equity"][-1] == pytest.approx(10_000 + t["pnl"][0])
    # while held: cash plus the position at the close
    assert eq["equity"][1] == pytest.approx(eq["cash"][1] + 2 * 100.0)
    assert eq["exposure"][1] == pytest.approx(200.0 / eq["equity"][1])


def test_long_only_ignores_sells_when_flat_and_long_short_reverses() -> None:
    b = bars([FLAT] * 6)
    o = orders(6, {0: (-1, 100.0, np.nan, np.nan), 1: (1, 100.0, np.nan, np.nan), 3: (-1, 100.0, np.nan, np.nan)})
    lo = run(b, o)
    assert lo.counters["ignored_no_position"] == 1 and len(lo.trades["pnl"]) == 1 and reason(lo) == "signal"
    ls = run(b, o, mode="long-short")
    assert list(ls.trades["side"]) == [-1, 1, -1]  # short, reversed to long, reversed to short (closed at the end)
    assert [reason(ls, i) for i in range(3)] == ["signal", "signal", "end"]
    so = run(b, o, mode="short-only")
    assert list(so.trades["side"]) == [-1, -1]


def test_risk_sizing_loses_the_risk_fraction_at_the_stop_and_fill_close() -> None:
    b = bars([FLAT, (100, 100, 100, 100), (96, 97, 90, 91)])
    led = run(b, orders(3, {0: (1, 100.0, 95.0, np.nan)}), size=Size("risk", 0.01), fill="close", leverage=100)
    t = led.trades
    assert t["entry_ts"][0] == M and t["entry_price"][0] == 100.0  # at the signal bar's close
    assert t["size"][0] == pytest.approx(0.01 * 10_000 / 5.0)
    # the bar opened at 96, above the stop, then traded through it: filled at the stop, a loss of exactly 1%
    assert reason(led) == "stop" and t["exit_price"][0] == 95.0
    assert t["pnl"][0] == pytest.approx(-0.01 * 10_000)


def test_leverage_caps_gross_notional_across_markets() -> None:
    a = bars([FLAT] * 3, market=0, markets=("A", "B"))
    b2 = bars([FLAT] * 3, market=1, markets=("A", "B"))
    both = Bars(*(np.r_[getattr(a, f), getattr(b2, f)] for f in ("market", "open_ts", "close_ts", "open", "high",
                                                                  "low", "close", "volume")), ["A", "B"])
    from engine.backtest.broker import order_bars
    both, _ = order_bars(both)
    o = Orders.none(len(both))
    o.side[[0, 1]] = 1
    o.price[[0, 1]] = 100.0
    led = simulate(both, o, BacktestSettings(fee=0.0, size=Size("equity", 0.8)))
    sizes = led.trades["size"]
    assert sizes[0] == pytest.approx(80.0) and sizes[1] == pytest.approx(20.0)  # 1x equity in all
    assert led.counters["skipped_no_capital"] == 0


def test_funding_is_paid_by_longs_at_positive_rates() -> None:
    b = bars([FLAT] * 5)
    fund = Funding(np.array([2 * M, 4 * M], np.int64), np.array([0, 0], np.int64), np.array([0.001, -0.002]))
    led = simulate(b, orders(5, {0: (1, 100.0, np.nan, np.nan)}), BacktestSettings(fee=0.0, size=Size("fixed", 3.0)),
                   fund)
    f = led.fills
    paid = f["cash_flow"][f["kind"] == 1]
    assert paid == pytest.approx([-3 * 100 * 0.001, 3 * 100 * 0.002])
    assert led.trades["funding"][0] == pytest.approx(3 * 100 * 0.001 - 3 * 100 * 0.002)
    assert led.equity["equity"][-1] == pytest.approx(10_000 - led.trades["funding"][0])


def test_a_limit_entry_the_bar_opens_beyond_fills_at_the_open_and_shorts_mirror_it() -> None:
    # buy limit at 99; the next bar opens at 98: filled at the open, the better price, with the maker fee
    b = bars([FLAT, (98, 99.5, 97, 99), FLAT])
    led = run(b, orders(3, {0: (1, 100.0, np.nan, np.nan)}), entry="limit", entry_offset_bps=100, fee=0.002,
              maker_fee=0.0005)
    f = led.fills
    assert f["price"][0] == 98.0 and f["ts"][0] == 1 * M and f["fee"][0] == pytest.approx(98.0 * 0.0005)
    # sell limit at 101: max(open, limit)
    short = run(bars([FLAT, (100, 101.5, 99, 100), (102, 103, 101, 102), FLAT]),
                orders(4, {0: (-1, 100.0, np.nan, np.nan), 1: (-1, 100.0, np.nan, np.nan)}), mode="short-only",
                entry="limit", entry_offset_bps=100)
    assert short.fills["price"][0] == pytest.approx(101.0) and short.fills["side"][0] == -1


def test_short_stops_and_targets_mirror_longs() -> None:
    gap = run(bars([FLAT, FLAT, (106, 107, 104, 105), FLAT]), orders(4, {0: (-1, 100.0, 105.0, 90.0)}),
              mode="short-only")
    assert gap.trades["side"][0] == -1
    assert reason(gap) == "stop" and gap.trades["exit_price"][0] == 106.0  # opened above the stop
    both = bars([FLAT, (100, 101, 99, 100), (100, 106, 89, 101), FLAT])
    sig = orders(4, {0: (-1, 100.0, 105.0, 90.0)})
    assert run(both, sig, mode="short-only").trades["exit_price"][0] == 105.0  # the stop wins
    assert run(both, sig, mode="short-only", intrabar="target").trades["exit_price"][0] == 90.0
    # ohlc: an up bar goes open -> low -> high, so a short's target (below) comes first
    assert reason(run(both, sig, mode="short-only", intrabar="ohlc")) == "target"


def test_a_reversal_exits_and_enters_at_the_same_open() -> None:
    b = bars([FLAT, (100, 101, 99, 100), (102, 103, 101, 102), (104, 105, 103, 104), FLAT])
    led = run(b, orders(5, {0: (1, 100.0, np.nan, np.nan), 2: (-1, 102.0, np.nan, np.nan)}), mode="long-short",
              fee=0.001)
    t, f = led.trades, led.fills
    assert list(t["side"]) == [1, -1]
    assert t["exit_ts"][0] == t["entry_ts"][1] == 3 * M and t["exit_price"][0] == t["entry_price"][1] == 104.0
    # the exit first, then the entry, both at that open
    assert list(f["ts"][1:3]) == [3 * M, 3 * M] and [REASONS[r] for r in f["reason"][1:3]] == ["signal", "entry"]
    assert t["pnl"][0] == pytest.approx(104 - 100 - 0.001 * (100 + 104))


def test_equity_is_cash_plus_positions_marked_at_every_close() -> None:
    closes = [100.0, 101.0, 99.0, 103.0, 104.0, 102.0, 100.0]
    b = bars([(c, c + 1, c - 1, c) for c in closes])
    o = orders(7, {0: (1, 100.0, np.nan, np.nan), 3: (-1, 103.0, np.nan, np.nan)})
    led = run(b, o, mode="long-short", fee=0.001, size=Size("fixed", 2.0))
    f, eq = led.fills, led.equity
    assert np.array_equal(eq["ts"], b.close_ts)
    for k, ts in enumerate(eq["ts"][:-1]):  # the last row is after the final exit
        held = f["ts"] <= ts - M  # fills happen at opens (ts - M) or earlier
        cash = 10_000 + f["cash_flow"][held].sum()
        qty = (f["side"][held] * f["qty"][held]).sum()
        assert eq["cash"][k] == pytest.approx(cash)
        assert eq["equity"][k] == pytest.approx(cash + qty * closes[k])
    assert eq["equity"][-1] == pytest.approx(10_000 + led.trades["pnl"].sum())


def test_shorts_receive_positive_funding() -> None:
    fund = Funding(np.array([2 * M], np.int64), np.array([0], np.int64), np.array([0.001]))
    led = simulate(bars([FLAT] * 4), orders(4, {0: (-1, 100.0, np.nan, np.nan)}),
                   BacktestSettings(fee=0.0, mode="short-only", size=Size("fixed", 3.0)), fund)
    assert led.fills["cash_flow"][led.fills["kind"] == 1] == pytest.approx([3 * 100 * 0.001])
    assert led.trades["funding"][0] == pytest.approx(-3 * 100 * 0.001)


def test_a_market_that_ends_early_is_closed_at_its_last_close() -> None:
    a = bars([FLAT] * 3, market=0, markets=("A", "B"))
    b10 = bars([FLAT] * 10, market=1, markets=("A", "B"))
    both = Bars(*(np.r_[getattr(a, f), getattr(b10, f)] for f in ("market", "open_ts", "close_ts", "open", "high",
                                                                   "low", "close", "volume")), ["A", "B"])
    from engine.backtest.broker import order_bars
    both, _ = order_bars(both)
    o = Orders.none(len(both))
    o.side[0], o.price[0] = 1, 100.0  # A buys at its first close, holds to its end
    fund = Funding(np.array([6 * M], np.int64), np.array([0], np.int64), np.array([0.01]))  # after A's last bar
    led = simulate(both, o, BacktestSettings(fee=0.0, size=Size("fixed", 1.0)), fund)
    t = led.trades
    assert reason(led) == "end" and t["exit_ts"][0] == 3 * M
    assert t["funding"][0] == 0.0 and led.counters["funding_payments"] == 0  # A held nothing at 6M
    assert np.all(np.diff(led.fills["ts"]) >= 0)  # the ledger in time order
    assert np.all(led.equity["exposure"][led.equity["ts"] > 3 * M] == 0.0)
