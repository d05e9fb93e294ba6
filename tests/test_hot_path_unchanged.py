"""The compiled columnar hot path changes no output.

Signals, structure events and every feature column (indicators, structure, risk) of the default chain were
recorded on the bundled sample, the shared real data and a quiet synthetic workload with the row-by-row
numpy operators, before the hot path was compiled; the same runs must give the same bytes. To record anew
after a deliberate output change: ``CRYPTO_INTEL_RECORD_DIGESTS=1 pytest tests/test_hot_path_unchanged.py -s``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from engine.config import PipelineConfig
from engine.pipeline import build_chain
from engine.sources.files import load_any
from engine.sources.synthetic import synthetic_trades
from schemas.batches import CandleBatch, FeatureBatch

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
SAMPLE = REPO / "engine" / "sample"
RECORD = DATA / "hot_path_digests.json"

SAMPLE_FILES = [SAMPLE / "XRP_ETH-trades.parquet", SAMPLE / "ETH_USDT-trades.csv", SAMPLE / "btcusdt-trades.parquet",
                SAMPLE / "ADA_BTC-5m.feather", SAMPLE / "LTC_BTC-5m.feather", SAMPLE / "ETC_BTC-5m.feather",
                SAMPLE / "XMR_BTC-5m.feather"]
SHARED_FILES = [DATA / "candles" / f"{m}_BTC-5m.feather" for m in ("DASH", "NXT", "TRX", "XLM", "ZEC")] + [
    DATA / "candles" / "UNITTEST_BTC-30m.feather", DATA / "trades" / "XRP_ETH-trades.parquet"]


def _batches_of_files(paths: list[Path], size: int):
    for path in paths:
        batch, _ = load_any(path)
        for start in range(0, len(batch), size):
            yield batch.take(slice(start, start + size)) if isinstance(batch, CandleBatch) else \
                batch.slice(start, start + size)


def _synthetic(size: int):
    trades = synthetic_trades(n_markets=100, n_trades=300_000, seed=11, mean_rate_per_s=20)
    for start in range(0, len(trades), size):
        yield trades.slice(start, start + size)


# name -> (config, batches factory); each run goes through every stage fused in this process
CASES = {
    "sample": (dict(timeframes=("1m", "5m")), lambda size: _batches_of_files(SAMPLE_FILES, size)),
    "shared": (dict(timeframes=("5m", "30m")), lambda size: _batches_of_files(SHARED_FILES, size)),
    "shared-flag-gaps": (dict(timeframes=("1m", "5m"), gaps="flag", strategy="smc_reversal"),
                         lambda size: _batches_of_files([DATA / "trades" / "XRP_ETH-trades.parquet"], size)),
    "synthetic-quiet": (dict(), _synthetic),
    "synthetic-trend": (dict(strategy="trend", timeframes=("1m", "5m")), _synthetic),
}


def _digests(config: PipelineConfig, batches) -> dict:
    """sha256 of the signals, the events and the feature values of live bars, in canonical order."""
    from engine.pipeline import RunResult, collect
    chain = build_chain(["candles", "indicators", "structure", "signals"], config)
    result = RunResult()
    features = hashlib.sha256()
    names = None

    def add(emitted) -> None:
        nonlocal names
        collect(result, emitted)
        f = emitted.features
        if isinstance(f, FeatureBatch) and len(f):
            names = f.names
            live = ~f.candles.gap  # gap rows' structure columns are fixed on purpose (batch-size independence)
            order = np.lexsort((f.candles.tf, f.candles.open_ts, np.array(f.candles.markets)[f.candles.market]))
            order = order[live[order]]
            features.update(np.ascontiguousarray(f.values[order]).tobytes())

    for batch in batches:
        add(chain.update(batch))
    add(chain.flush())
    result.finish()
    signals = "\n".join(s.model_dump_json() for s in result.signals)
    events = "\n".join(e.model_dump_json() for e in result.events)
    return {"signals": len(result.signals), "events": len(result.events), "candles": result.candles,
            "columns": names, "signals_sha256": hashlib.sha256(signals.encode()).hexdigest(),
            "events_sha256": hashlib.sha256(events.encode()).hexdigest(), "features_sha256": features.hexdigest()}


@pytest.mark.parametrize("size", [8192, 997])
@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_equal_those_recorded_before_the_compiled_hot_path(name, size) -> None:
    settings, batches = CASES[name]
    got = _digests(PipelineConfig(**settings), batches(size))
    recorded = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    if os.environ.get("CRYPTO_INTEL_RECORD_DIGESTS"):
        recorded[f"{name}@{size}"] = got
        RECORD.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
        return
    assert got == recorded[f"{name}@{size}"]
