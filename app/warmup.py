"""``python -m app.warmup``: compile and cache the per-bar kernels (``make setup`` runs it once)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from engine.config import PipelineConfig
from engine.warmup import warm_kernels

ALL_ANALYSES = ("fvg", "order_blocks", "liquidity")
WARMUP_ROWS = 400  # enough bars of each sample input for every kernel to run


def warm(config: PipelineConfig | None = None, log=None) -> float:
    """Warm the kernels on the head of the bundled sample; returns the seconds it took."""
    from engine.sources.files import load_any
    from engine.sources.sample import sample_paths

    t0 = time.perf_counter()
    if log:
        log("preparing the compiled analysis kernels (compiled once, then cached on disk)...")
    inputs = [load_any(p)[0] for p in sample_paths()]
    # every analysis, whatever this run asks for: the stamp then holds for any later configuration
    config = (config or PipelineConfig()).model_copy(update={"analyses": ALL_ANALYSES})
    warm_kernels([b.take(slice(0, WARMUP_ROWS)) for b in inputs], config)
    _warm_backtest(inputs)
    _warm_models(inputs)
    return time.perf_counter() - t0


def _warm_backtest(inputs: list) -> None:
    """The broker's and the metrics' kernels, through one small backtest per engine."""
    from engine.backtest.runner import run_backtest
    from engine.backtest.settings import BacktestSettings
    from schemas.batches import CandleBatch

    candles = [b for b in inputs if isinstance(b, CandleBatch)][:1]
    if candles:
        run_backtest(candles, "sma_cross", settings=BacktestSettings(mode="long-short"), engine="vector")
        run_backtest(candles, "default", settings=BacktestSettings(entry="limit"))


def _warm_models(inputs: list) -> None:
    """The feature, label and trading-env kernels, on the head of one candle file."""
    import numpy as np

    from engine.features import feature_frame
    from engine.models.labels import sign_labels, triple_barrier_labels, wilder_atr
    from schemas.batches import CandleBatch

    candles = [b.take(slice(0, WARMUP_ROWS)) for b in inputs if isinstance(b, CandleBatch)][:1]
    if not candles:
        return
    feature_frame(candles)
    c = candles[0]
    sign_labels(c.close, 12)
    triple_barrier_labels(c.high, c.low, c.close, wilder_atr(c.high, c.low, c.close), 12)
    from rl.env import TradingEnv
    env = TradingEnv(candles=candles[0], window_bars=64)
    env.reset(seed=0)
    for a in np.arange(32) % 3:
        env.step(int(a))


def _stamp_path() -> Path:
    import engine.structure
    return Path(engine.structure.__file__).parent / "__pycache__" / "kernels-warm.json"


def _fingerprint() -> dict:
    """What the cached kernels depend on: numba's version and the kernel sources (numba recompiles on change)."""
    import numba

    import engine
    root = Path(engine.__file__).parent
    sources = sorted(root.rglob("*.py"))  # every compiled kernel lives under engine/
    return {"numba": numba.__version__, "python": sys.version.split()[0],
            "sources": {str(p.relative_to(root)): [p.stat().st_mtime_ns, p.stat().st_size] for p in sources}}


def warm_if_cold(config: PipelineConfig | None = None, log=None) -> bool:
    """Warm the kernels unless this install already did with the same sources; True if it ran."""
    stamp = _stamp_path()
    try:
        if json.loads(stamp.read_text()) == _fingerprint():
            return False
    except (OSError, ValueError):
        pass
    seconds = warm(config, log)
    if log:
        log(f"kernels ready in {seconds:.1f}s")
    try:
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(json.dumps(_fingerprint()))
    except OSError:  # a read-only install: numba caches elsewhere; warm again next time
        pass
    return True


def main() -> int:
    if not warm_if_cold(log=lambda m: print(m, file=sys.stderr)):
        print("kernels already compiled and cached", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
