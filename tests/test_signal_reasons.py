"""Signals of the default strategy on the bundled sample: each carries a risk score, and its reasons
are exactly the conditions that held at its bar (re-evaluated here from the features of that bar)."""

from __future__ import annotations

import re

import numpy as np

from engine.config import STAGES, PipelineConfig
from engine.pipeline import build_chain
from engine.signals.rules import load_strategy
from engine.sources.files import load_any
from engine.sources.replay import Replay
from engine.sources.sample import sample_paths
from schemas.timeframes import format_timeframe

CONFIG = PipelineConfig(timeframes=("1m", "5m"))


def _run():
    chain = build_chain(list(STAGES), CONFIG)
    rows: dict = {}
    signals = []
    batches = list(Replay([load_any(p)[0] for p in sample_paths()], batch_size=4096))
    emitted = [chain.update(b) for b in batches] + [chain.flush()]
    for e in emitted:
        signals += e.value or []
        f = e.features
        if f is None:
            continue
        c = f.candles
        for i in range(len(f)):
            key = (c.markets[int(c.market[i])], format_timeframe(int(c.tf[i])))
            vals = dict(zip(f.names, f.values[i]))
            vals.update(close=c.close[i], open=c.open[i], high=c.high[i], low=c.low[i], volume=c.volume[i])
            rows.setdefault(key, []).append((int(c.close_ts[i]), vals))
    return signals, rows


def _holds(op: str, a: float, b: float, pa: float, pb: float) -> bool:
    return {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b,
            "crosses_above": pa <= pb and a > b, "crosses_below": pa >= pb and a < b}[op]


def test_every_signal_is_explained_and_risk_scored() -> None:
    signals, rows = _run()
    rules = {r.name: r for r in load_strategy("default").rules}
    assert len(signals) > 20
    for s in signals:
        assert s.risk_score is not None and 0.0 <= s.risk_score <= 100.0, s
        assert {"var_95", "vol_cc", "risk_volatility"} <= set(s.risk)
        series = rows[(s.market, s.timeframe)]
        at = [i for i, (ts, _) in enumerate(series) if ts == s.ts]
        assert at, f"no bar closing at {s.ts} for {s.market} {s.timeframe}"
        i = at[0]
        cur, prev = series[i][1], series[i - 1][1]
        rule = rules[s.kind]
        assert len(s.reasons) == len(rule.when)
        for cond, reason in zip(rule.when, s.reasons):
            a, pa = cur[cond.left], prev[cond.left]
            b, pb = (cur[cond.right], prev[cond.right]) if isinstance(cond.right, str) else (cond.right, cond.right)
            assert _holds(cond.op, a, b, pa, pb), f"{s.kind} at {s.ts}: {cond} did not hold ({a}, {b})"
            # the numbers quoted in the reason are the values at that bar
            quoted = [float(x) for x in re.findall(r"\(([-0-9.e+]+)\)", reason)]
            assert np.isclose(quoted[0], a, rtol=1e-5), reason
            assert reason.startswith(cond.left)
        assert s.risk_score == cur["risk_score"]


def test_every_builtin_strategy_runs_on_the_bundled_sample() -> None:
    from engine.pipeline import run_in_process
    from engine.signals.rules import BUILTIN

    inputs = [load_any(p)[0] for p in sample_paths()]
    for name in BUILTIN:
        config = PipelineConfig(timeframes=("1m", "5m"), strategy=name)
        result = run_in_process(Replay(inputs, batch_size=8192), config)
        assert result.signals, f"strategy {name} fired nothing on the sample"
        assert all(s.reasons and s.risk_score is not None for s in result.signals)
        assert {s.kind for s in result.signals} <= {r.name for r in BUILTIN[name].rules}
