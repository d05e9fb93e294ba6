"""Reward sweeps: a grid over the reward (by name), its parameters and a few training settings; one training
run per combination, each evaluated on the same held-out window, ranked by held-out Sharpe.

The grid is ``engine.backtest.sweep``'s syntax (``name=1,2,3`` or ``name=a..b:step``, names separated by ``,``
or ``;``) with one non-numeric key, ``reward``, whose values are reward names. Every other key must be a
parameter of at least one of the rewards in the grid (``rl.rewards.parameters``) or a training setting
(``TRAIN_KEYS``). A reward parameter only applies to the rewards that take it, so
``reward=pnl,drawdown;penalty=0.5,1`` is three combinations (pnl, drawdown at 0.5, drawdown at 1).

Every combination trains with the same seed and data, so a combination's numbers are the same whether it runs
in this process (``run_serial``) or as a Ray task (``run_on_ray``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from engine.backtest.sweep import combinations, parse_grid
from rl.rewards import REWARDS, canonical, parameters
from rl.train import TrainResult, TrainSpec, train
from schemas.errors import ConfigError

REWARD_KEY = "reward"
# training settings a grid may vary: (type, lowest value)
TRAIN_KEYS: dict[str, tuple[type, float | None]] = {
    "learning_rate": (float, 0.0), "seed": (int, None), "n_steps": (int, 2), "batch_size": (int, 2),
    "window_bars": (int, 1),
}
MAX_COMBINATIONS = 1_000
ROW_COLUMNS = ("total_return", "sharpe", "max_drawdown", "trades")


@dataclass(frozen=True)
class Combination:
    """One training run of a sweep: the reward, its parameters and the training settings it changes."""

    index: int
    reward: str
    reward_params: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)

    def label(self) -> str:
        parts = [f"reward={self.reward}"] + [f"{k}={_fmt(v)}" for k, v in {**self.reward_params, **self.train}.items()]
        return " ".join(parts)

    def spec(self, base: TrainSpec) -> TrainSpec:
        """``base`` with this combination's reward, parameters and settings (no checkpoints: runs are short)."""
        return replace(base, reward=self.reward, reward_params=dict(self.reward_params), checkpoint_dir=None,
                       resume=False, **self.train)


def _fmt(v) -> str:
    return format(v, "g") if isinstance(v, float) else str(v)


def _split_reward(text: str) -> tuple[list[str] | None, str]:
    """The ``reward=`` values (None when absent) and the rest of the grid, for ``parse_grid``."""
    rewards: list[str] | None = None
    rest: list[str] = []
    name = None
    for token in (t.strip() for t in text.replace(";", ",").split(",")):
        if "=" in token:
            name = token.partition("=")[0].strip()
            if name == REWARD_KEY:
                if rewards is not None:
                    raise ConfigError(f"--grid: {REWARD_KEY} is given twice")
                rewards = []
                token = token.partition("=")[2].strip()
        if name is None and token:
            raise ConfigError(f"--grid {text!r}: start with name=values, e.g. reward=pnl,drawdown")
        if name == REWARD_KEY:
            if not token:
                raise ConfigError(f"--grid {text!r}: empty value; write reward=pnl,drawdown")
            try:
                r = canonical(token)
            except ConfigError as e:
                raise ConfigError(f"--grid: reward={token}: {e}") from None
            if r in rewards:
                raise ConfigError(f"--grid: reward repeats a value: {token}")
            rewards.append(r)
        else:
            rest.append(token)
    return rewards, ",".join(rest)


def _check_train_value(key: str, value) -> object:
    kind, low = TRAIN_KEYS[key]
    if kind is int:
        if not isinstance(value, int):
            raise ConfigError(f"--grid: {key}={value}: write a whole number")
        if low is not None and value < low:
            raise ConfigError(f"--grid: {key}={value}: at least {int(low)}")
        return value
    if not value > low:
        raise ConfigError(f"--grid: {key}={value}: must be above {low:g}")
    return float(value)


def parse_sweep_grid(text: str, default_reward: str = "pnl") -> list[Combination]:
    """The combinations of a reward grid, e.g. ``"reward=pnl,drawdown;scale=50,100"``; a bad key or value is a
    ConfigError naming it. Without a ``reward`` key every combination uses ``default_reward``."""
    if not text or not text.strip():
        raise ConfigError('--grid: a sweep needs a grid, e.g. --grid "reward=pnl,drawdown;scale=50,100"')
    rewards, rest = _split_reward(text)
    if rewards is None:
        rewards = [canonical(default_reward)]
    numeric = parse_grid(rest) if rest.strip() else {}
    taken = {r: parameters(r) for r in rewards}
    for key, values in numeric.items():
        if key in TRAIN_KEYS:
            numeric[key] = [_check_train_value(key, v) for v in values]
        elif not any(key in p for p in taken.values()):
            offered = sorted({k for p in taken.values() for k in p})
            raise ConfigError(f"--grid: {key} is not a parameter of {' or '.join(rewards)} "
                              f"({'they take' if len(rewards) > 1 else 'it takes'} {', '.join(offered) or 'nothing'})"
                              f" nor a training setting "
                              f"({', '.join(TRAIN_KEYS)}); rewards: {', '.join(REWARDS)}")
        else:
            numeric[key] = [float(v) for v in values]
    grid = {REWARD_KEY: rewards, **numeric}
    count = math.prod(len(v) for v in grid.values())
    if count > MAX_COMBINATIONS:
        raise ConfigError(f"--grid has {count:,} combinations (each a training run); at most {MAX_COMBINATIONS:,}")
    out: list[Combination] = []
    seen = set()
    for combo in combinations(grid):
        reward = combo.pop(REWARD_KEY)
        params = {k: v for k, v in combo.items() if k in taken[reward]}
        settings = {k: v for k, v in combo.items() if k in TRAIN_KEYS}
        key = (reward, tuple(params.items()), tuple(settings.items()))
        if key not in seen:  # a parameter the reward does not take does not make another run
            seen.add(key)
            out.append(Combination(len(out), reward, params, settings))
    return out


def row(combo: Combination, result: TrainResult) -> dict:
    """A combination's held-out result next to buy and hold on the same window."""
    rows = {r["name"]: r for r in result.evaluation["rows"]}
    policy, bench = result.evaluation["rows"][0], rows["buy_and_hold"]
    out = {"combo": combo.index, "label": combo.label(), "reward": combo.reward,
           "reward_params": dict(combo.reward_params), **{k: v for k, v in combo.train.items()}}
    out.update({k: _num(policy.get(k)) for k in ROW_COLUMNS})
    out["buy_and_hold_return"] = _num(bench.get("total_return"))
    out["buy_and_hold_sharpe"] = _num(bench.get("sharpe"))
    out["timesteps"] = result.timesteps
    return out


def _num(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def rank(rows: list[dict]) -> list[dict]:
    """Best held-out Sharpe first; ties by total return, then combination order; missing values last."""
    def key(r):
        s, tr = r.get("sharpe"), r.get("total_return")
        return (-(s if s is not None else -math.inf), -(tr if tr is not None else -math.inf), r["combo"])
    return [{**r, "rank": i + 1} for i, r in enumerate(sorted(rows, key=key))]


def format_ranking(ranked: list[dict], window: dict, market: str) -> str:
    """The ranking as a fixed-width text table."""
    width = max([len(r["label"]) for r in ranked] + [11])
    lines = [(f"held-out window of {market}: {window['bars']:,} bars (the final {window['eval_fraction']:.0%} after "
              f"warm-up); every combination trained with the same seed and evaluated on the same bars"),
             (f"{'#':>3} {'combination':{width}} {'total return':>13} {'sharpe':>8} {'max drawdown':>13} "
              f"{'trades':>7} {'buy&hold':>9} {'b&h sharpe':>10}")]

    def f(v, fmt):
        return "n/a" if v is None else format(v, fmt)
    for r in ranked:
        lines.append(f"{r['rank']:>3} {r['label']:{width}} {f(r['total_return'], '.2%'):>13} {f(r['sharpe'], '.2f'):>8} "
                     f"{f(r['max_drawdown'], '.2%'):>13} {f(r['trades'], '.0f'):>7} "
                     f"{f(r['buy_and_hold_return'], '.2%'):>9} {f(r['buy_and_hold_sharpe'], '.2f'):>10}")
    return "\n".join(lines)


Done = Callable[[int, TrainResult], None]


def run_serial(specs: list[TrainSpec], done: Done | None = None) -> list[TrainResult]:
    """Each spec trained and evaluated in this process, in order."""
    out = []
    for i, spec in enumerate(specs):
        out.append(train(spec))
        if done:
            done(i, out[-1])
    return out


def run_on_ray(specs: list[TrainSpec], num_cpus: float = 0.5, done: Done | None = None) -> list[TrainResult]:
    """Each spec as its own Ray task (``rl.train.train``), in parallel as the cluster's CPUs allow; ``done(i, result)``
    as each finishes; results in spec order. Ray must be initialised."""
    import ray

    task = ray.remote(num_cpus=num_cpus, max_retries=0)(train)
    pending = {task.remote(s): i for i, s in enumerate(specs)}
    results: dict[int, TrainResult] = {}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i = pending.pop(ref)
                results[i] = ray.get(ref)
                if done:
                    done(i, results[i])
    finally:
        for ref in pending:  # an error (or Ctrl-C) leaves no orphaned training behind
            ray.cancel(ref, force=True)
    return [results[i] for i in range(len(specs))]
