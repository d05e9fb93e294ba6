"""Backtest speed next to backtesting.py and vectorbt (benchmark extras) on the same real bars, in one run.

- the event-driven runner (the live operators, then the broker) with the default strategy on every real
  5-minute market of tests/data (9 markets, ~51.8k bars);
- an SMA 10/30 crossover (long-short, fee 0.1%) on one series of >= 45k bars (the real files chained end to
  end, timestamps continued and prices rescaled at each join): our event and vector modes, backtesting.py
  0.6.6 with its own pandas SMAs, and vectorbt's ``Portfolio.from_signals``; warm figures are the best of
  several runs; cold starts are each engine's imports and first run in a fresh process (our kernels are
  compiled and cached on disk by ``make setup``; vectorbt compiles its own on first use);
- the wall time of a 100-combination x 10-market sweep (``engine.backtest.sweep``) serially and on Ray.

Targets: event-driven >= 10x backtesting.py; vectorised >= vectorbt warm.

Sizes: BENCH_BACKTEST_REPEAT (best of, default 5), BENCH_BACKTEST_COPIES (each market's file repeated end to
end, default 1), BENCH_BACKTEST_CHAIN_BARS (the single series: the files chained, cycling, to at least this
many bars; default all 9 files once, ~51.8k), BENCH_BACKTEST_GRID (the sweep grid, default
``fast=5..24,slow=30..70:10``), BENCH_BACKTEST_RAY (0: serial sweep only).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from app.inputs import load_inputs
from engine.backtest.runner import run_backtest
from engine.backtest.settings import BacktestSettings
from schemas.batches import CANDLE_COLUMNS, CandleBatch
from tests.data_paths import REPO, SHARED_DATA

REPEAT = int(os.environ.get("BENCH_BACKTEST_REPEAT", "5"))
COPIES = int(os.environ.get("BENCH_BACKTEST_COPIES", "1"))
CHAIN_BARS = int(os.environ.get("BENCH_BACKTEST_CHAIN_BARS", "0"))
GRID = os.environ.get("BENCH_BACKTEST_GRID", "fast=5..24,slow=30..70:10")
RAY = os.environ.get("BENCH_BACKTEST_RAY", "1") != "0"
FILES = sorted(str(p) for p in (SHARED_DATA / "candles").glob("*_BTC-5m.feather"))
SWEEP_FILES = FILES + [str(SHARED_DATA / "candles" / "futures" / "XRP_USDT_USDT-5m-futures.feather")]
FEE = 0.001
SETTINGS = BacktestSettings(mode="long-short", fill="next_open", fee=FEE)
EVENT_TARGET, VECTOR_TARGET = 10.0, 1.0


def _quiet_load(paths):
    with contextlib.redirect_stderr(io.StringIO()):
        return load_inputs(paths, None, None)


def chained(batches: list[CandleBatch], name: str = "CHAIN") -> CandleBatch:
    """One market: the batches' candles end to end, each shifted to follow the last and scaled to continue its
    price (real bar shapes, one long series with continuous timestamps)."""
    parts, t_next, scale_to = [], None, None
    for b in batches:
        ts = b.open_ts.copy()
        f = 1.0 if scale_to is None else scale_to / b.open[0]
        if t_next is not None:
            ts = ts - ts[0] + t_next
        parts.append(CandleBatch([name], np.zeros(len(b), np.int32), b.tf, ts, b.open * f, b.high * f, b.low * f,
                                 b.close * f, b.volume, b.buy_volume, b.sell_volume, b.vwap * f, b.trade_count,
                                 b.gap))
        t_next = int(ts[-1] + b.tf[-1])
        scale_to = float(b.close[-1] * f)
    return CandleBatch.concat(parts)


def _chain_of(markets: list[CandleBatch]) -> CandleBatch:
    """The single SMA series: every market's file once, then round again until CHAIN_BARS."""
    parts, n = [], 0
    while not parts or n < CHAIN_BARS or len(parts) < len(markets):
        b = markets[len(parts) % len(markets)]
        parts.append(b)
        n += len(b)
    return chained(parts)


def _best(fn, repeat: int = REPEAT) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# --- the references: the same crossover with each library's own indicators ---------------------------------

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
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):  # its progress bar
            warnings.simplefilter("ignore")
            return Backtest(df, SmaCross, cash=1e12, commission=FEE, trade_on_close=False, exclusive_orders=True,
                            finalize_trades=True).run()
    return run


def _vbt(c: CandleBatch, pandas_index: bool = False):
    """vectorbt's crossover. Default: its fastest route found here, MA.run on a plain array, the crosses in
    numpy, from_signals on arrays; ``pandas_index``: the documented route on a Series with a tz-aware index and
    the MA accessors (its array wrapping then costs ~0.9 s a run: pandas turns the index into Timestamps)."""
    import pandas as pd
    import vectorbt as vbt

    if pandas_index:
        series = pd.Series(c.close, index=pd.to_datetime(c.open_ts, utc=True))

        def run_pandas():
            fast, slow = vbt.MA.run(series, 10), vbt.MA.run(series, 30)
            return vbt.Portfolio.from_signals(series, fast.ma_crossed_above(slow), fast.ma_crossed_below(slow),
                                              direction="both", fees=FEE, freq="5min")
        return run_pandas
    close = np.ascontiguousarray(c.close)

    def run():
        return _vbt_arrays(vbt, close, FEE)
    return run


def _vbt_arrays(vbt, close: np.ndarray, fee: float):
    both = vbt.MA.run(close, [10, 30]).ma.values
    fast, slow = both[:, 0], both[:, 1]
    with np.errstate(invalid="ignore"):
        entries = (fast > slow) & (np.r_[np.nan, fast[:-1]] <= np.r_[np.nan, slow[:-1]])
        exits = (fast < slow) & (np.r_[np.nan, fast[:-1]] >= np.r_[np.nan, slow[:-1]])
    pf = vbt.Portfolio.from_signals(close, entries, exits, direction="both", fees=fee)
    pf.total_return()
    return pf


# --- cold starts: a fresh interpreter per engine, reading the same series from a file -----------------------

_COLD_LOAD = """
import sys, time
import numpy as np
d = np.load(sys.argv[1])
"""

COLD_OURS = _COLD_LOAD + """
t0 = time.perf_counter()
from engine.backtest.runner import run_backtest
from engine.backtest.settings import BacktestSettings
from schemas.batches import CANDLE_COLUMNS, CandleBatch
t1 = time.perf_counter()
chain = CandleBatch(["CHAIN"], d["market"], d["tf"], *(d[c] for c in CANDLE_COLUMNS))
t2 = time.perf_counter()
r = run_backtest([chain], "sma_cross", settings=BacktestSettings(mode="long-short", fee={fee}), engine=sys.argv[2])
t3 = time.perf_counter()
print(t1 - t0, t3 - t2, len(r.ledger.trades["pnl"]))
"""

COLD_VBT = _COLD_LOAD + inspect.getsource(_vbt_arrays) + """
t0 = time.perf_counter()
import vectorbt as vbt
t1 = time.perf_counter()
close = np.ascontiguousarray(d["close"])
t2 = time.perf_counter()
pf = _vbt_arrays(vbt, close, {fee})
t3 = time.perf_counter()
print(t1 - t0, t3 - t2, pf.trades.count())
"""

COLD_BTPY = _COLD_LOAD + """
t0 = time.perf_counter()
import contextlib, io, warnings
import pandas as pd
from backtesting import Backtest, Strategy
from backtesting.lib import crossover
t1 = time.perf_counter()
df = pd.DataFrame({{"Open": d["open"], "High": d["high"], "Low": d["low"], "Close": d["close"],
                   "Volume": d["volume"]}}, index=pd.to_datetime(d["open_ts"], utc=True))
t2 = time.perf_counter()
sma = lambda x, n: pd.Series(x).rolling(n).mean().to_numpy()
class SmaCross(Strategy):
    def init(self):
        self.fast, self.slow = self.I(sma, self.data.Close, 10), self.I(sma, self.data.Close, 30)
    def next(self):
        if crossover(self.fast, self.slow):
            self.buy()
        elif crossover(self.slow, self.fast):
            self.sell()
with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
    warnings.simplefilter("ignore")
    s = Backtest(df, SmaCross, cash=1e12, commission={fee}, trade_on_close=False, exclusive_orders=True,
                 finalize_trades=True).run()
t3 = time.perf_counter()
print(t1 - t0, t3 - t2, s["# Trades"])
"""


def _cold(code: str, *args: str) -> tuple[float, float, float, int]:
    """(process wall, imports, first run, trades) of ``code`` in a fresh interpreter."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code.format(fee=FEE), *args], cwd=REPO, capture_output=True,
                         text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    imports, first, trades = out.stdout.strip().splitlines()[-1].split()
    return wall, float(imports), float(first), int(float(trades))


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    files = _quiet_load(FILES)
    markets = [chained([b] * COPIES, b.markets[0]) for b in files] if COPIES > 1 else files
    n_all = sum(len(b) for b in markets)
    run_backtest(markets, "default")  # loads the compiled kernels
    t_default = _best(lambda: run_backtest(markets, "default"))
    print(f"{n_all:,} real 5m bars of {len(markets)} markets; warm figures best of {REPEAT}")
    print(f"  event-driven, default strategy (candles -> indicators -> swings -> risk -> signals -> broker): "
          f"{t_default * 1e3:,.1f} ms, {n_all / t_default:,.0f} bars/s")

    chain = _chain_of(files)
    n = len(chain)
    print(f"SMA 10/30 crossover, long-short, fee 0.1%, next-open fills, on one chained series of {n:,} bars")
    rows = []  # (name, seconds, trades)
    for engine in ("event", "vector"):
        r = run_backtest([chain], "sma_cross", settings=SETTINGS, engine=engine)
        t = _best(lambda: run_backtest([chain], "sma_cross", settings=SETTINGS, engine=engine))
        rows.append((f"ours, {'event-driven' if engine == 'event' else 'vectorised'}", t,
                     len(r.ledger.trades["pnl"])))
    t_event, t_vector = rows[0][1], rows[1][1]
    t_btpy = t_vbt = None
    have_btpy = have_vbt = True
    try:
        bt = _bt_py(chain)
        stats = bt()
        t_btpy = _best(bt, max(2, REPEAT // 2))
        rows.append(("backtesting.py 0.6.6", t_btpy, int(stats["# Trades"])))
    except ImportError:
        have_btpy = False
        print("  backtesting.py not installed (pip install -e '.[test]')")
    try:
        import vectorbt

        vb = _vbt(chain)
        pf = vb()  # numba compiles its kernels on the first call
        t_vbt = _best(vb)
        rows.append((f"vectorbt {vectorbt.__version__} (warm)", t_vbt, int(pf.trades.count())))
        vp = _vbt(chain, pandas_index=True)
        pf = vp()
        t_vbt_pd = _best(lambda: vp().total_return(), 2)
        rows.append(("  the same, pandas UTC index", t_vbt_pd, int(pf.trades.count())))
    except ImportError:
        have_vbt = False
        print("  vectorbt not installed (pip install -e '.[bench]')")
    print(f"  {'':<28}{'ms':>10}{'bars/s':>14}{'trades':>9}")
    for name, t, trades in rows:
        print(f"  {name:<28}{t * 1e3:>10.1f}{n / t:>14,.0f}{trades:>9,}")
    print("  (the same crossover each time; ours trades from the risk operator's first score, bar 199 on, the "
          "others from bar 30)")
    if t_btpy:
        r = t_btpy / t_event
        print(f"  event-driven vs backtesting.py: {r:.1f}x  target >= {EVENT_TARGET:g}x {_verdict(r >= EVENT_TARGET)}"
              f"  (the default strategy on {len(markets)} markets: {t_btpy / n * n_all / t_default:.1f}x "
              f"backtesting.py's bars/s)")
    if t_vbt:
        r = t_vbt / t_vector
        print(f"  vectorised vs vectorbt warm: {r:.2f}x  target >= {VECTOR_TARGET:g}x {_verdict(r >= VECTOR_TARGET)}")

    print("  cold start, a fresh process on the same series: process wall = interpreter and imports + first run")
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "chain.npz")
        np.savez(path, market=chain.market, tf=chain.tf, **{c: getattr(chain, c) for c in CANDLE_COLUMNS})
        cold = [("ours, event-driven", COLD_OURS, ("event",), t_event),
                ("ours, vectorised", COLD_OURS, ("vector",), t_vector)]
        if have_btpy:
            cold.append(("backtesting.py 0.6.6", COLD_BTPY, (), t_btpy))
        if have_vbt:
            cold.append(("vectorbt (compiles)", COLD_VBT, (), t_vbt))
        firsts = {}
        for name, code, args, warm in cold:
            wall, imports, first, trades = _cold(code, path, *args)
            firsts[name] = first
            print(f"    {name:<26}{wall:>6.2f} s wall; imports {imports:.2f} s, first run {first:.2f} s "
                  f"({first / warm:.1f}x its warm run), {trades:,} trades")
        if have_vbt:
            r = firsts["vectorbt (compiles)"] / firsts["ours, vectorised"]
            print(f"    first run, vectorbt / ours vectorised: {r:.1f}x")

    from engine.backtest import sweep as sw

    sweep_inputs = _quiet_load(SWEEP_FILES)
    by_market = sw.split_by_market(sweep_inputs)
    combos = sw.combinations(sw.parse_grid(GRID))
    tasks = sw.tasks_for(combos, sorted(by_market), None)
    from actors.backtest_sweep import run_on_ray, run_serial

    bars = sum(len(b) for b in sweep_inputs)
    head = (f"sweep of {len(combos)} combinations x {len(by_market)} markets = {len(tasks):,} vectorised backtests "
            f"({bars * len(combos):,} bars)")
    run_serial(tasks[:len(by_market)], by_market, "sma_cross", SETTINGS, None, "vector")
    t0 = time.perf_counter()
    serial = run_serial(tasks, by_market, "sma_cross", SETTINGS, None, "vector")
    t_serial = time.perf_counter() - t0
    if not RAY:
        print(f"{head}: serial {t_serial:.2f} s ({len(tasks) / t_serial:,.0f} backtests/s); Ray not measured "
              f"(BENCH_BACKTEST_RAY=0)")
        return
    import ray

    from actors.runtime import start_ray, stop_ray
    t0 = time.perf_counter()
    start_ray(dashboard=False)
    t_start = time.perf_counter() - t0
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        t0 = time.perf_counter()
        on_ray = run_on_ray(tasks, by_market, "sma_cross", SETTINGS, None, "vector")
        t_ray = time.perf_counter() - t0
        t_ray2 = _best(lambda: run_on_ray(tasks, by_market, "sma_cross", SETTINGS, None, "vector"),
                       max(1, REPEAT // 2))
    finally:
        stop_ray()
    same = "identical" if on_ray == serial else "DIFFERENT"
    print(f"{head}: serial {t_serial:.2f} s ({len(tasks) / t_serial:,.0f} backtests/s); Ray on {cpus} CPUs "
          f"{t_ray:.2f} s first (workers starting), {t_ray2:.2f} s warm ({t_serial / t_ray2:.1f}x serial), "
          f"plus {t_start:.1f} s to start Ray; rows {same}")


if __name__ == "__main__":
    main()
