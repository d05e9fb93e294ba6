"""Strategy rules: TOML loading, clear errors, and the signal operator's crosses on hand-made bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.signals.operator import SignalOperator
from engine.signals.rules import Condition, Strategy, load_strategy, rule
from schemas.batches import CandleBatch, FeatureBatch
from schemas.errors import ConfigError

TOML = """
name = "rsi_dip"
indicators = ["rsi:14"]
[[rule]]
name = "dip"
side = "buy"
when = ["rsi_14 crosses_below 30", "close > 1"]
strength = 0.7
"""


def _features(rsi: list[float], close: list[float]) -> FeatureBatch:
    n = len(rsi)
    f = np.asarray(close, float)
    candles = CandleBatch(["X"], np.zeros(n, np.int32), np.full(n, 60_000_000_000),
                          np.arange(n, dtype=np.int64) * 60_000_000_000, f, f, f, f, np.ones(n), np.ones(n),
                          np.zeros(n), f, np.ones(n, np.int64), np.zeros(n, bool))
    return FeatureBatch(candles, ["rsi_14"], np.asarray(rsi, float)[:, None])


def test_toml_strategy_fires_on_cross_only(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(TOML)
    strategy = load_strategy(str(path))
    op = SignalOperator(strategy)
    out = op.update(_features([40, 35, 29, 25, 31, 28], [2, 2, 2, 2, 2, 0.5]))
    # crosses below 30 at bar 2; bar 5 crosses again but close is not > 1
    assert [(s.ts, s.kind, s.side, s.strength) for s in out] == [(3 * 60_000_000_000, "dip", "buy", 0.7)]
    assert out[0].reasons == ["rsi_14 (29) crossed below 30", "close (2) > 1"]
    assert out[0].source_versions["strategy"] == f"rsi_dip@{strategy.version}"


def test_cross_spanning_two_batches() -> None:
    op = SignalOperator(Strategy("t", ("rsi:14",), (rule("dip", "buy", "rsi_14 crosses_below 30"),)))
    assert op.update(_features([35], [1])) == []
    assert len(op.update(_features([29], [1]))) == 1


@pytest.mark.parametrize("text", ["rsi_14 > ", "rsi_14 between 3", "a b c d"])
def test_bad_condition_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="bad condition"):
        Condition.parse(text)


def test_unknown_strategy_and_missing_fields(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown strategy"):
        load_strategy("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nname = "x"\n')
    with pytest.raises(ConfigError, match="needs name, side and when"):
        load_strategy(str(bad))


def test_rule_reading_a_column_not_computed() -> None:
    op = SignalOperator(load_strategy("default"))
    with pytest.raises(ConfigError, match="does not compute"):
        op.update(_features([50], [1]))


def test_cooldown_quiets_a_rule_per_market_across_batches() -> None:
    strategy = Strategy("t", ("rsi:14",), (rule("low", "buy", "rsi_14 < 30", cooldown_bars=2),))
    whole = SignalOperator(strategy).update(_features([20] * 8, [1] * 8))
    assert [s.ts // 60_000_000_000 for s in whole] == [1, 4, 7]  # bars 0, 3, 6 (ts is the bar's close)
    op = SignalOperator(strategy)
    parts = [op.update(_features([20] * k, [1] * k)) for k in (2, 1, 5)]
    assert len([s for p in parts for s in p]) == 3


def test_risk_limit_marks_signals_without_dropping_them() -> None:
    strategy = Strategy("t", ("rsi:14",), (rule("low", "buy", "rsi_14 < 30"),), max_risk_score=50.0)
    f = _features([20, 20, 20], [1, 1, 1])
    f = FeatureBatch(f.candles, ["rsi_14", "risk_score"], np.column_stack([f.values[:, 0], [np.nan, 40.0, 80.0]]))
    out = SignalOperator(strategy).update(f)
    # no signal before the risk is known; above the limit it is flagged, not dropped
    assert [(s.risk_score, s.flags) for s in out] == [(40.0, []), (80.0, ["risk_limit"])]


def test_several_targets_at_increasing_atr_multiples() -> None:
    strategy = Strategy("t", ("rsi:14",), (rule("low", "sell", "rsi_14 < 30", stop_atr=1.0, target_atr=2.0,
                                                 more_targets_atr=(3.0, 5.0)),))
    f = _features([20], [10.0])
    f = FeatureBatch(f.candles, ["rsi_14", "atr_14"], np.column_stack([f.values[:, 0], [0.5]]))
    (s,) = SignalOperator(strategy).update(f)
    assert s.stop == 10.5 and s.target == 9.0 and s.targets == [9.0, 8.5, 7.5]
    with pytest.raises(ConfigError, match="increasing"):
        rule("bad", "buy", "rsi_14 < 30", target_atr=3.0, more_targets_atr=(2.0,))
