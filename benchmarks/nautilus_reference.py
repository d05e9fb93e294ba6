"""NautilusTrader on the same trades: 1-minute bars aggregated from trade ticks, EMA(20) and RSI(14) per market.

A reference for the throughput section, not part of the engine: ``nautilus_trader`` is in the ``bench``
extra only. Converting our columnar trades into nautilus ``TradeTick`` objects and loading them into the
engine is not timed; only ``BacktestEngine.run()`` is, which covers bar aggregation, the indicators and
the simulated venue that every nautilus backtest drives with its data.
"""

from __future__ import annotations

import importlib.util
import math
import time

import numpy as np

from schemas.batches import SIDE_BUY, SIDE_SELL, TradeBatch


def available() -> bool:
    return importlib.util.find_spec("nautilus_trader") is not None


def _precision(values: np.ndarray, digits: int) -> int:
    """Decimals that keep ``digits`` significant digits of the smallest value (nautilus allows 0..9 here)."""
    smallest = float(values.min())
    return min(9, max(0, digits - 1 - math.floor(math.log10(smallest))))


def _instrument(market: str, price_prec: int, size_prec: int):
    from nautilus_trader.model.currencies import BTC, USD
    from nautilus_trader.model.identifiers import InstrumentId, Symbol, Venue
    from nautilus_trader.model.instruments import CurrencyPair
    from nautilus_trader.model.objects import Price, Quantity

    symbol = Symbol(market.replace(":", "-"))
    return CurrencyPair(
        instrument_id=InstrumentId(symbol, Venue("SYN")), raw_symbol=symbol, base_currency=BTC, quote_currency=USD,
        price_precision=price_prec, size_precision=size_prec,
        price_increment=Price(10.0 ** -price_prec, price_prec), size_increment=Quantity(10.0 ** -size_prec, size_prec),
        lot_size=None, max_quantity=None, min_quantity=None, max_notional=None, min_notional=None,
        max_price=None, min_price=None, margin_init=0, margin_maint=0, maker_fee=0, taker_fee=0,
        ts_event=0, ts_init=0)


def to_nautilus(trades: TradeBatch) -> tuple[list, list]:
    """Instruments (one per market) and ``TradeTick`` objects in the trades' own order."""
    from nautilus_trader.model.data import TradeTick

    # nautilus AggressorSide: 0 no aggressor, 1 buyer, 2 seller
    aggressor = np.select([trades.side == SIDE_BUY, trades.side == SIDE_SELL], [1, 2], 0).astype(np.uint8)
    ts = trades.ts.astype(np.uint64)
    order = np.argsort(trades.market, kind="stable")
    starts = np.searchsorted(trades.market[order], np.arange(len(trades.markets) + 1))
    instruments, grouped = [], []
    for m, market in enumerate(trades.markets):
        rows = order[starts[m]:starts[m + 1]]
        if not len(rows):
            continue
        price_prec = _precision(trades.price[rows], 8)
        size_prec = _precision(trades.size[rows], 4)
        inst = _instrument(market, price_prec, size_prec)
        instruments.append(inst)
        t = ts[rows]
        grouped += TradeTick.from_raw_arrays_to_list(
            inst.id, price_prec, size_prec, np.ascontiguousarray(trades.price[rows]),
            np.ascontiguousarray(trades.size[rows]), np.ascontiguousarray(aggressor[rows]),
            [str(i) for i in trades.trade_id[rows].tolist()], t, t)
    ticks = np.empty(len(grouped), object)
    ticks[order] = grouped  # back to time order, so the engine need not sort
    return instruments, ticks.tolist()


def _strategy_class():
    from nautilus_trader.indicators import ExponentialMovingAverage, RelativeStrengthIndex
    from nautilus_trader.model.data import BarType
    from nautilus_trader.trading.strategy import Strategy

    class BarIndicators(Strategy):
        """Subscribes to internally aggregated 1-minute bars of every instrument, EMA(20) and RSI(14) on each."""

        def __init__(self, instrument_ids: list) -> None:
            super().__init__()
            self.bar_types = [BarType.from_str(f"{i}-1-MINUTE-LAST-INTERNAL") for i in instrument_ids]
            self.bars = 0

        def on_start(self) -> None:
            self.ema = {}
            self.rsi = {}
            for bt in self.bar_types:
                self.ema[bt] = ExponentialMovingAverage(20)
                self.rsi[bt] = RelativeStrengthIndex(14)
                self.register_indicator_for_bars(bt, self.ema[bt])
                self.register_indicator_for_bars(bt, self.rsi[bt])
                self.subscribe_bars(bt)

        def on_bar(self, bar) -> None:
            self.bars += 1

    return BarIndicators


def run(trades: TradeBatch) -> dict:
    """Trades/s of ``BacktestEngine.run()`` over ``trades`` (conversion excluded), the bars it built and
    the conversion time."""
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.config import DataEngineConfig, LoggingConfig
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.enums import AccountType, OmsType
    from nautilus_trader.model.identifiers import Venue
    from nautilus_trader.model.objects import Money

    t0 = time.perf_counter()
    instruments, ticks = to_nautilus(trades)
    convert_s = time.perf_counter() - t0
    engine = BacktestEngine(BacktestEngineConfig(
        logging=LoggingConfig(bypass_logging=True), run_analysis=False,
        # our candles skip minutes without trades; nautilus by default would build a bar for them too
        data_engine=DataEngineConfig(time_bars_build_with_no_updates=False)))
    try:
        engine.add_venue(Venue("SYN"), OmsType.NETTING, AccountType.CASH, [Money(1_000_000, USD)])
        for inst in instruments:
            engine.add_instrument(inst)
        engine.add_data(ticks, sort=False)
        strategy = _strategy_class()([i.id for i in instruments])
        engine.add_strategy(strategy)
        del ticks
        t0 = time.perf_counter()
        engine.run()
        run_s = time.perf_counter() - t0
        return {"trades_per_s": len(trades) / run_s, "bars": strategy.bars, "run_s": run_s, "convert_s": convert_s,
                "version": _version()}
    finally:
        engine.dispose()


def _version() -> str:
    import nautilus_trader
    return nautilus_trader.__version__
