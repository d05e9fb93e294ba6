"""Held-out evaluation: the policy on the final time window of the data, next to buy and hold, random actions
and the rule strategies backtested on the same bars with the same fees, all through the same broker."""

from __future__ import annotations

from typing import Callable

import numpy as np

from engine.backtest.metrics import summarize
from rl.data import MarketData
from rl.env import TradingEnv

RULE_STRATEGIES = ("default", "sma_cross")
COLUMNS = ("total_return", "sharpe", "max_drawdown", "trades")


def _row(name: str, metrics: dict) -> dict:
    return {"name": name, **{k: metrics.get(k) for k in COLUMNS}}


def run_episode(env: TradingEnv, choose: Callable[[np.ndarray], int]) -> dict:
    """One pass over the env's whole segment with ``choose(obs) -> action``; the broker's metrics of it."""
    obs, _ = env.reset(seed=0, options={"start": env.lo})
    done = False
    while not done:
        obs, _, term, trunc, _ = env.step(choose(obs))
        done = term or trunc
    bars, _ = env.episode_bars()
    return summarize(env.ledger(), bars, env.data.timeframe_ns, env.settings.cash)


def evaluate(data: MarketData, env_kwargs: dict, eval_fraction: float, act: Callable[[np.ndarray], int] | None,
             label: str = "policy", random_seeds: int = 5, rules: tuple[str, ...] = RULE_STRATEGIES) -> dict:
    """The comparison table on the held-out window: rows of total return, Sharpe, max drawdown, trades."""
    from engine.backtest.runner import run_backtest

    split = data.split(eval_fraction)
    usable = len(data) - data.warmup
    lo_frac = (split - data.warmup) / usable
    kw = {**env_kwargs, "window_bars": None, "segment": (lo_frac, 1.0)}
    env = TradingEnv(candles=data, **kw)
    rows = []
    if act is not None:
        m = run_episode(env, act)
        rows.append(_row(label, m["portfolio"]))
        bench = m["benchmark"]
    else:
        m = run_episode(env, lambda o: 0)
        bench = m["benchmark"]
    rows.append(_row("buy_and_hold", {**bench, "trades": 1}))
    rand = []
    for seed in range(random_seeds):
        rng = np.random.default_rng(seed)
        n = env.action_space.n
        rand.append(run_episode(env, lambda o: int(rng.integers(0, n)))["portfolio"])
    rows.append({"name": f"random (mean of {random_seeds})",
                 **{k: _mean([r.get(k) for r in rand]) for k in COLUMNS}})
    start, end = int(data.open_ts[env.lo]), int(data.close_ts[env.hi - 1])
    for name in rules:
        r = run_backtest([data.candles], name, settings=env.settings, engine="event", start=start, end=end)
        rows.append(_row(f"rule:{name}", r.metrics["portfolio"]))
    return {"window": {"start_ts": start, "end_ts": end, "bars": env.hi - env.lo,
                       "first_row": env.lo, "eval_fraction": eval_fraction},
            "market": data.market, "rows": rows}


def _mean(values) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def format_table(report: dict) -> str:
    """The comparison as a fixed-width text table."""
    w = report["window"]
    lines = [f"held-out window of {report['market']}: {w['bars']:,} bars (the final {w['eval_fraction']:.0%} after "
             f"warm-up), same broker, fees and sizing for every row",
             f"{'':28} {'total return':>13} {'sharpe':>8} {'max drawdown':>13} {'trades':>7}"]
    for r in report["rows"]:
        def f(v, fmt):
            return "n/a" if v is None else format(v, fmt)
        lines.append(f"{r['name']:28} {f(r['total_return'], '.2%'):>13} {f(r['sharpe'], '.2f'):>8} "
                     f"{f(r['max_drawdown'], '.2%'):>13} {f(r['trades'], '.0f'):>7}")
    return "\n".join(lines)
