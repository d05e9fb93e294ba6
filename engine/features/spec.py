"""The model features: which there are, what each one means, and the operator columns they come from.

Every feature is scale-free (returns, distances in ATR units, ratios, codes), so one model can be pooled over
markets of very different prices. Each row uses only what is known at the close of its bar: the operator
columns it reads are final at that close (design rule 6), and the lagged parts come from earlier bars.
"""

from __future__ import annotations

from schemas.timeframes import format_timeframe

# indicators the features read; the pipeline computes them besides the strategy's own when features are on
INDICATORS = ("rsi:14", "ema:20", "ema:50", "ema:200", "atr:14")
LAGS = (1, 5, 20)  # ret_k = log(close / close k bars earlier)
VOLUME_SPAN = 20  # volume_ratio = log(volume / EMA of the earlier bars' volume)

FEATURES: dict[str, str] = {
    "ret_1": "log return over the last bar",
    "ret_5": "log return over the last 5 bars",
    "ret_20": "log return over the last 20 bars",
    "range_atr": "bar range (high - low) in ATR units",
    "body_atr": "bar body (close - open) in ATR units",
    "upper_wick_atr": "upper wick in ATR units",
    "lower_wick_atr": "lower wick in ATR units",
    "volume_ratio": "log of volume over the EMA(20) of the earlier bars' volume",
    "buy_share": "taker-buy share of the bar's volume minus 0.5",
    "rsi": "RSI(14) / 100 - 0.5",
    "ema20_dist": "close / EMA(20) - 1",
    "ema50_dist": "close / EMA(50) - 1",
    "ema200_dist": "close / EMA(200) - 1",
    "atr_pct": "ATR(14) / close",
    "trend": "structure trend: +1 up, -1 down, 0 none",
    "bos": "break of structure at this bar (+1 bullish, -1 bearish, 0)",
    "choch": "change of character at this bar (+1, -1, 0)",
    "swing_high_dist": "(last confirmed swing high - close) in ATR units",
    "swing_low_dist": "(close - last confirmed swing low) in ATR units",
    "in_fvg_bull": "close inside an open bullish fair-value gap (1/0)",
    "in_fvg_bear": "close inside an open bearish fair-value gap (1/0)",
    "in_ob_bull": "close inside an open bullish order block (1/0)",
    "in_ob_bear": "close inside an open bearish order block (1/0)",
    "ob_bull_dist": "(close - top of the bullish order block) in ATR units",
    "ob_bear_dist": "(bottom of the bearish order block - close) in ATR units",
    "liquidity_high_dist": "(resting liquidity above - close) in ATR units",
    "liquidity_low_dist": "(close - resting liquidity below) in ATR units",
    "sweep_high": "liquidity above swept at this bar (1/0)",
    "sweep_low": "liquidity below swept at this bar (1/0)",
    "range_position": "position of the close in the dealing range (0 bottom .. 1 top)",
    "zone": "premium (+1) / equilibrium (0) / discount (-1) zone",
    "prev_day_high_dist": "(previous day's high - close) in ATR units",
    "prev_day_low_dist": "(close - previous day's low) in ATR units",
    "in_session_asia": "bar inside the Asia session (1/0)",
    "in_session_london": "bar inside the London session (1/0)",
    "in_session_new_york": "bar inside the New York session (1/0)",
    "vol_cc": "close-to-close volatility of the risk window",
    "vol_parkinson": "Parkinson (high-low) volatility of the risk window",
    "var_95": "historical 95% value at risk of one bar's return",
    "cvar_95": "historical 95% expected shortfall",
    "drawdown": "drawdown from the running peak close",
    "vol_percentile": "percentile of the current volatility in its history",
    "risk_score": "the risk operator's combined score (0..100) / 100",
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)

# features of each higher timeframe joined onto lower-timeframe rows: its last bar closed strictly before
CONTEXT = ("ret_1", "ret_5", "rsi", "trend", "ema50_dist", "atr_pct", "range_position")


def context_name(tf_ns: int, feature: str) -> str:
    """``tf1h_trend``: a higher timeframe's feature on lower-timeframe rows."""
    return f"tf{format_timeframe(tf_ns)}_{feature}"
