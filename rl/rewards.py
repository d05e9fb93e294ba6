"""Reward functions for the trading environment: pure, selectable by name, tunable by their parameters.

Each reward is ``fn(ret, state, **params) -> (reward, new_state)``: ``ret`` is the step's return of account
equity (equity after the step / equity before - 1, fees and slippage included, as the broker books them),
``state`` a tuple the function alone reads (``initial_state`` gives the first one). Nothing else is read or
changed, so a sweep over ``reward_params`` (e.g. ``{"eta": 0.01}``) is a sweep over plain arguments.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

from schemas.errors import ConfigError

RewardFn = Callable[[float, tuple], tuple[float, tuple]]


def pnl(ret: float, state: tuple, scale: float = 100.0) -> tuple[float, tuple]:
    """The step's equity return (its PnL as a fraction of equity), times ``scale``."""
    return ret * scale, state


def differential_sharpe(ret: float, state: tuple, eta: float = 0.01, scale: float = 1.0,
                        clip: float = 10.0) -> tuple[float, tuple]:
    """Moody & Saffell's differential Sharpe ratio: the first-order change of an exponential moving Sharpe
    ratio (adaptation rate ``eta``) that this step's return causes. 0 until the moving variance is positive."""
    a, b = state
    da, db = ret - a, ret * ret - b
    var = b - a * a
    d = (b * da - 0.5 * a * db) / (var * math.sqrt(var)) if var > 1e-18 else 0.0
    d = max(-clip, min(clip, d * scale))
    return d, (a + eta * da, b + eta * db)


def drawdown_penalised(ret: float, state: tuple, penalty: float = 1.0, scale: float = 100.0) -> tuple[float, tuple]:
    """The equity return minus ``penalty`` x the step's increase of drawdown from the running equity peak
    (both times ``scale``): losses that deepen a drawdown cost more than the gains that recover it earn."""
    level, peak, dd = state
    level *= 1.0 + ret
    peak = max(peak, level)
    dd_now = 1.0 - level / peak if peak > 0 else 0.0
    return (ret - penalty * max(0.0, dd_now - dd)) * scale, (level, peak, dd_now)


REWARDS: dict[str, Callable[..., tuple[float, tuple]]] = {
    "pnl": pnl,
    "differential_sharpe": differential_sharpe,
    "drawdown": drawdown_penalised,
}
ALIASES = {"dsr": "differential_sharpe", "sharpe": "differential_sharpe", "drawdown_penalised": "drawdown"}
_INITIAL = {"pnl": (), "differential_sharpe": (0.0, 0.0), "drawdown": (1.0, 1.0, 0.0)}


def canonical(name: str) -> str:
    """The registered name of a reward (aliases: dsr, sharpe -> differential_sharpe)."""
    n = ALIASES.get(name, name)
    if n not in REWARDS:
        raise ConfigError(f"unknown reward {name!r}; choose from {', '.join(REWARDS)} (or dsr)")
    return n


def initial_state(name: str) -> tuple:
    return _INITIAL[canonical(name)]


def parameters(name: str) -> dict[str, float]:
    """The tunable parameters of reward ``name`` and their defaults (what ``reward_params`` may set)."""
    fn = REWARDS[canonical(name)]
    names = fn.__code__.co_varnames[2:fn.__code__.co_argcount]
    defaults = fn.__defaults__ or ()
    return dict(zip(names, (None,) * (len(names) - len(defaults)) + tuple(defaults)))


def make_reward(name: str, params: dict | None = None) -> RewardFn:
    """The reward ``name`` with its parameters bound; unknown names or parameters are a ConfigError."""
    fn = REWARDS[canonical(name)]
    params = dict(params or {})
    allowed = set(parameters(name))
    bad = sorted(set(params) - allowed)
    if bad:
        raise ConfigError(f"reward {name!r} takes {', '.join(sorted(allowed))}; not {', '.join(bad)}")
    return partial(fn, **{k: float(v) for k, v in params.items()}) if params else fn
