"""Backtest speed next to backtesting.py and vectorbt (benchmark extras) on the same real bars, in one run.

- the event-driven runner (the live operators, then the broker) with the default strategy on every real
  5-minute market of tests/data (9 markets, ~51.8k bars);
- an SMA 10/30 crossover (long-short, fee 0.1%) on one series of ~51.8k bars (the same files chained end to
  end, prices rescaled at each join): our event and vector modes, backtesting.py 0.6.6 with its own pandas
  SMAs, and vectorbt's ``Portfolio.from_signals``; warm figures are the best of several runs, cold starts are
  a fresh process's import plus first run (our kernels are compiled and cached by ``make setup``);
- the wall time of a 100-combination x 10-market sweep on Ray and serially.

Targets: event-driven >= 10x backtesting.py; vectorised >= vectorbt warm, with no multi-second cold start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings


import numpy as np

from app.inputs import load_inputs
from engine.backtest.runner import run_backtest
from engine.backtest.settings import BacktestSettings
from schemas.batches import CandleBatch
from tests.data_paths import REPO, SHARED_DATA

REPEAT = int(os.environ.get("BENCH_BACKTEST_REPEAT", "5"))
FILES = sorted(str(p) for p in (SHARED_DATA / "candles").glob("*_BTC-5m.feather"))
SWEEP_FILES = FILES + [str(SHARED_DATA / "candles" / "futures" / "XRP_USDT_USDT-5m-futures.feather")]
SETTINGS = BacktestSettings(mode="long-short", fee=0.001)


def _quiet_load(paths):
    import contextlib
    import io
    with contextlib.redirect_stderr(io.StringIO()):
        return load_inputs(paths, None, None)


def chained(batches: list[CandleBatch]) -> CandleBatch:
    """One market: the files' candles end to end, each shifted to follow the last and scaled to continue its
    price (real bar shapes, one long series)."""
    parts, t_next, scale_to = [], None, None
    for b in batches:
        ts = b.open_ts.copy()
        f = 1.0 if scale_to is None else scale_to / b.open[0]
        if t_next is not None:
            ts = ts - ts[0] + t_next
        tf = b.tf
        parts.append(CandleBatch(["CHAIN"], np.zeros(len(b), np.int32), tf, ts, b.open * f, b.high * f, b.low * f,
                                 b.close * f, b.volume, b.buy_volume, b.sell_volume, b.vwap * f, b.trade_count,
                                 b.gap))
        t_next = int(ts[-1] + tf[-1])
        scale_to = float(b.close[-1] * f)
    return CandleBatch.concat(parts)


def _best(fn, repeat: int = REPEAT) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _bt_py(c: CandleBatch):
    import pandas as pd
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    df = pd.DataFrame({"Open": c.open, "High": c.high, "Low": c.low, "Close": c.close, "Volume": c.volume},
                      index=pd.to_datetime(c.open_ts, utc=True))

    def sma(x, n):
        return pd.Series(x).rolling(n).mean().to_numpy()

    class SmaCross(Strategy):
        def init(self):
            self.fast = self.I(sma, self.data.Close, 10)
            self.slow = self.I(sma, self.data.Close, 30)

        def next(self):
            if crossover(self.fast, self.slow):
                self.buy()
            elif crossover(self.slow, self.fast):
                self.sell()

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Backtest(df, SmaCross, cash=1e12, commission=0.001, exclusive_orders=True,
                            finalize_trades=True).run()
    return run


def _vbt(c: CandleBatch):
    import pandas as pd
    import vectorbt as vbt

    close = np.ascontiguousarray(c.close)
    del pd

    def run():
        # its fastest route found here: MA.run on a plain array (with a tz-aware pandas index the .ma wrapper
        # alone takes ~0.25 s, and ma_crossed_above ~0.3 s), crosses in numpy, from_signals on arrays
        both = vbt.MA.run(close, [10, 30]).ma.values
        fast, slow = both[:, 0], both[:, 1]
        with np.errstate(invalid="ignore"):
            entries = (fast > slow) & (np.r_[np.nan, fast[:-1]] <= np.r_[np.nan, slow[:-1]])
            exits = (fast < slow) & (np.r_[np.nan, fast[:-1]] >= np.r_[np.nan, slow[:-1]])
        pf = vbt.Portfolio.from_signals(close, entries, exits, direction="both", fees=0.001)
        return pf.total_return()
    return run


COLD_OURS = """
import time, contextlib, io
t0 = time.perf_counter()
from app.inputs import load_inputs
from engine.backtest.runner import run_backtest
from engine.backtest.settings import BacktestSettings
with contextlib.redirect_stderr(io.StringIO()):
    inputs = load_inputs({files!r}, None, None)
run_backtest(inputs, "sma_cross", settings=BacktestSettings(mode="long-short"), engine="vector")
print(time.perf_counter() - t0)
"""

COLD_VBT = """
import time
t0 = time.perf_counter()
import numpy as np, pandas as pd, vectorbt as vbt
close = pd.Series(np.cumprod(1 + np.random.default_rng(0).normal(0, 0.001, 50_000)) * 100)
both = vbt.MA.run(close.to_numpy(), [10, 30]).ma.values
fast, slow = both[:, 0], both[:, 1]
pf = vbt.Portfolio.from_signals(close.to_numpy(), fast > slow, fast < slow, direction="both", fees=0.001)
pf.total_return()
print(time.perf_counter() - t0)
"""


def _cold(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    markets = _quiet_load(FILES)
    n_all = sum(len(b) for b in markets)
    run_backtest(markets, "default")  # load the compiled kernels
    t_default = _best(lambda: run_backtest(markets, "default"))
    print(f"{n_all:,} real 5m bars of {len(markets)} markets; best of {REPEAT}")
    print(f"  event-driven, default strategy (candles -> indicators -> swings -> risk -> signals -> broker): "
          f"{t_default * 1e3:,.1f} ms, {n_all / t_default:,.0f} bars/s")

    chain = chained(markets)
    n = len(chain)
    print(f"SMA 10/30 crossover, long-short, fee 0.1%, on one chained series of {n:,} bars")
    rows = []
    run_backtest([chain], "sma_cross", settings=SETTINGS, engine="event")
    t_event = _best(lambda: run_backtest([chain], "sma_cross", settings=SETTINGS, engine="event"))
    rows.append(("ours, event-driven", t_event))
    run_backtest([chain], "sma_cross", settings=SETTINGS, engine="vector")
    t_vector = _best(lambda: run_backtest([chain], "sma_cross", settings=SETTINGS, engine="vector"))
    rows.append(("ours, vectorised", t_vector))
    t_btpy = t_vbt = None
    try:
        bt = _bt_py(chain)
        t_btpy = _best(bt, max(2, REPEAT // 2))
        rows.append(("backtesting.py 0.6.6", t_btpy))
    except ImportError:
        print("  backtesting.py not installed (pip install -e '.[test]')")
    try:
        vb = _vbt(chain)
        vb()  # numba compiles its kernels on the first call
        t_vbt = _best(vb)
        import vectorbt
        rows.append((f"vectorbt {vectorbt.__version__} (warm)", t_vbt))
    except ImportError:
        print("  vectorbt not installed (pip install -e '.[bench]')")
    for name, t in rows:
        print(f"  {name:<26}{t * 1e3:>10.1f} ms {n / t:>14,.0f} bars/s")
    if t_btpy:
        r = t_btpy / t_event
        print(f"  event-driven vs backtesting.py: {r:.1f}x  target >= 10x {_verdict(r >= 10)} "
              f"(default strategy on 9 markets: {t_btpy / n * n_all / t_default:.1f}x backtesting.py's bars/s)")
    if t_vbt:
        r = t_vbt / t_vector
        print(f"  vectorised vs vectorbt warm: {r:.2f}x  target >= 1x {_verdict(r >= 1)}")
    cold_ours = _cold(COLD_OURS.format(files=FILES[:1]))
    print(f"  cold start, fresh process (imports + first vectorised run): ours {cold_ours:.1f} s", end="")
    try:
        import vectorbt  # noqa: F401
        print(f", vectorbt {_cold(COLD_VBT):.1f} s")
    except ImportError:
        print()

    from engine.backtest import sweep as sw
    sweep_inputs = _quiet_load(SWEEP_FILES)
    by_market = sw.split_by_market(sweep_inputs)
    combos = sw.combinations(sw.parse_grid("fast=5..24,slow=30..70:10"))
    tasks = sw.tasks_for(combos, sorted(by_market), None)
    from actors.backtest_sweep import run_on_ray, run_serial
    t0 = time.perf_counter()
    serial = run_serial(tasks, by_market, "sma_cross", SETTINGS, None, "vector")
    t_serial = time.perf_counter() - t0
    from actors.runtime import start_ray, stop_ray
    t0 = time.perf_counter()
    start_ray(dashboard=False)
    t_start = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        on_ray = run_on_ray(tasks, by_market, "sma_cross", SETTINGS, None, "vector")
        t_ray = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_on_ray(tasks, by_market, "sma_cross", SETTINGS, None, "vector")
        t_ray2 = time.perf_counter() - t0
    finally:
        stop_ray()
    same = "identical" if on_ray == serial else "DIFFERENT"
    bars = sum(len(b) for b in sweep_inputs)
    print(f"sweep of {len(combos)} combinations x {len(by_market)} markets = {len(tasks):,} backtests "
          f"({bars * len(combos):,} bars): serial {t_serial:.1f} s; Ray {t_ray:.1f} s first (workers starting), "
          f"{t_ray2:.1f} s warm, plus {t_start:.1f} s to start Ray; results {same}")


if __name__ == "__main__":
    main()



