"""A strategy that reads the next bar's close (look-ahead on purpose): `backtest check` must catch it."""

import numpy as np

STRATEGY = {
    "name": "peek",
    "description": "buys before up bars and sells before down bars, by reading the future",
    "indicators": ["sma:10"],
    "rule": [
        {"name": "peek_up", "side": "buy", "when": ["next_close > close"]},
        {"name": "peek_down", "side": "sell", "when": ["next_close < close"]},
    ],
}


def columns(bars):
    nxt = np.empty(len(bars["close"]))
    nxt[:-1] = bars["close"][1:]  # the bug: the bar after this one
    nxt[-1:] = np.nan
    return {"next_close": nxt}
