"""A gymnasium trading environment over one market's feature rows, booked by the backtest broker itself.

At each step the agent sees the feature row of bar t (known at its close; NaN -> 0, clipped to
+-``obs_clip``) plus its position (-1, 0, +1) and the open trade's unrealised return, and answers with an action. The action becomes a broker
order at that close and fills at the next bar's open (``--fill next_open``), with the fee, slippage, sizing
and leverage cap of the backtest; the step then runs ``engine.backtest.broker.step`` over the close of t and
the open of t + 1, so the same action sequence books the same fills, fees and PnL as
``broker.simulate`` with ``orders_from_actions`` over the same bars.

Actions: ``"3"`` target position (0 flat, 1 long, 2 short; long-short); ``"5"`` enter/exit
(0 hold, 1 enter long, 2 exit long, 3 enter short, 4 exit short; an exit of a side not held does nothing,
an entry against a held position reverses it).
Episodes: ``window_bars`` consecutive bars from a random start in ``segment`` (fractions of the rows after
warm-up), drawn from the generator ``reset(seed=)`` seeds; ``window_bars=None`` runs the whole segment.
The open position is closed at the episode's last close (reason ``end``), as a backtest does at the end.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from engine.backtest import broker
from engine.backtest.broker import (CASH, EPRICE, FINAL, HI, LAST, LO, NF, NT, OSTOP, OTARGET, PSTOP, PTARGET,
                                    QTY, SIDE_EXIT, Bars, Ledger, Orders, ledger_of, new_state)
from engine.backtest.settings import BacktestSettings, Size
from rl.data import MarketData, load_market
from rl.rewards import canonical, initial_state, make_reward
from schemas.errors import ConfigError

ACTION_SETS = {"3": ("flat", "long", "short"),
               "5": ("hold", "enter_long", "exit_long", "enter_short", "exit_short")}
_SIDE_3 = (SIDE_EXIT, 1, -1)  # target flat / long / short as broker order sides


def side_5(action: int, intent: int) -> tuple[int, int]:
    """The broker order side of a 5-action choice, and the position it aims at after it (``intent``)."""
    if action == 1 and intent != 1:
        return 1, 1
    if action == 3 and intent != -1:
        return -1, -1
    if (action == 2 and intent == 1) or (action == 4 and intent == -1):
        return SIDE_EXIT, 0
    return 0, intent


def orders_from_actions(actions, variant: str = "3") -> np.ndarray:
    """Broker order sides (int8) of an action sequence, one per bar: what the environment sends."""
    a = np.asarray(actions, np.int64)
    if variant == "3":
        return np.asarray(_SIDE_3, np.int8)[a]
    out = np.zeros(len(a), np.int8)
    intent = 0
    for k, x in enumerate(a.tolist()):
        out[k], intent = side_5(x, intent)
    return out


class TradingEnv(gymnasium.Env):
    """``gymnasium.make("crypto_intel/Trading-v0", candles=PATH, ...)``: see the module docstring."""

    metadata = {"render_modes": []}

    def __init__(self, candles: Any = None, market: str | None = None, actions: str = "3", reward: str = "pnl",
                 reward_params: dict | None = None, window_bars: int | None = 1024,
                 segment: tuple[float, float] = (0.0, 1.0), fee: float = 0.001, slippage_bps: float = 0.0,
                 slippage_volume: float = 0.0, size: str = "equity:1", leverage: float = 1.0,
                 cash: float = 10_000.0, mode: str = "long-short", obs_clip: float = 10.0,
                 config: Any = None) -> None:
        if candles is None:
            raise ConfigError("candles: give a candles file (any format `indicators` reads), e.g. "
                              "tests/data/candles/ADA_BTC-5m.feather")
        actions = str(actions)
        if actions not in ACTION_SETS:
            raise ConfigError(f"actions must be '3' (flat/long/short) or '5' (enter/exit), got {actions!r}")
        self.data: MarketData = load_market(candles, market, config)
        self.variant = actions
        self.reward_name = canonical(reward)
        self.reward_params = dict(reward_params or {})
        self._reward = make_reward(self.reward_name, self.reward_params)
        self.settings = BacktestSettings(fill="next_open", fee=fee, slippage_bps=slippage_bps,
                                         slippage_volume=slippage_volume, mode=mode,
                                         size=size if isinstance(size, Size) else Size.parse(str(size)),
                                         cash=cash, leverage=leverage)
        d = self.data
        n = len(d)
        lo_f, hi_f = segment
        if not (0.0 <= lo_f < hi_f <= 1.0):
            raise ConfigError(f"segment must be two fractions 0 <= lo < hi <= 1, got {segment}")
        usable = n - d.warmup
        self.lo = d.warmup + int(round(usable * lo_f))
        self.hi = d.warmup + int(round(usable * hi_f))  # rows lo .. hi - 1
        if self.hi - self.lo < 2:
            raise ConfigError(f"{d.source or d.market}: only {self.hi - self.lo} bars in segment {segment} after "
                              f"{d.warmup} warm-up bars; give more data")
        seg = self.hi - self.lo
        self.window = seg if window_bars is None else int(window_bars)
        if self.window < 2:
            raise ConfigError(f"window_bars must be at least 2, got {window_bars}")
        self.window = min(self.window, seg)
        self.n_features = d.features.shape[1]
        nf = self.n_features
        self._obs = np.zeros((n, nf + 2), np.float32)
        if not (obs_clip > 0 and np.isfinite(obs_clip)):
            raise ConfigError(f"obs_clip must be a positive finite number, got {obs_clip}")
        self.obs_clip = float(obs_clip)
        self._obs[:, :nf] = np.clip(d.features, -self.obs_clip, self.obs_clip)
        self.observation_space = spaces.Box(-self.obs_clip, self.obs_clip, shape=(nf + 2,), dtype=np.float32)
        self.action_space = spaces.Discrete(len(ACTION_SETS[actions]))
        # broker inputs: one market, orders written per step, no stops or targets, no funding
        self._side = np.zeros(n, np.int8)
        nan = np.full(n, np.nan)
        floats, ints = broker.step_params(self.settings)
        e_i, e_f = np.empty(0, np.int64), np.empty(0)
        self._state = new_state(1, self.window, self.window, 0, cash)
        self._mf, self._mi, self._acc, self._ai = self._state[:4]
        self._args = (np.zeros(n, np.int64), d.open_ts, d.close_ts, d.open, d.high, d.low, d.close, d.volume,
                      self._side, d.close, nan, nan, e_i, e_i, e_f, floats, ints, *self._state)
        self._cash0 = float(cash)
        self._t = self._start = self._end = self._acted = 0
        self._intent = 0
        self._equity = self._cash0
        self._rstate: tuple = ()

    # --- gymnasium ---------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        span = self.hi - self.lo
        if options and "start" in options:
            start = int(options["start"])
            if not self.lo <= start <= self.hi - 2:
                raise ConfigError(f"start must be within rows {self.lo}..{self.hi - 2}, got {start}")
        elif self.window >= span:
            start = self.lo
        else:
            start = self.lo + int(self.np_random.integers(0, span - self.window + 1))
        end = min(start + self.window, self.hi) - 1
        mf, mi, ai = self._mf, self._mi, self._ai
        mf[:] = 0.0
        mf[PSTOP] = mf[PTARGET] = mf[LAST] = mf[OSTOP] = mf[OTARGET] = np.nan
        mi[:] = 0
        mi[FINAL, 0] = end
        ai[:] = 0
        ai[LO], ai[HI] = start, end + 1
        self._acc[CASH] = self._cash0
        self._start, self._end, self._t, self._acted = start, end, start, 0
        self._intent = 0
        self._equity = self._cash0
        self._rstate = initial_state(self.reward_name)
        broker.step(start, start + 1, *self._args)  # the open of the first bar (flat: nothing fills)
        obs = self._obs[start].copy()
        return obs, {"start": start, "end": end}

    def step(self, action):
        t = self._t
        a = int(action)
        if self.variant == "3":
            side = _SIDE_3[a]
        else:
            side, self._intent = side_5(a, self._intent)
        self._side[t] = side
        self._acted += 1
        broker.step(t + 1, t + 2, *self._args)  # the close of t (the order), then the open of t + 1
        mf = self._mf
        q = mf[QTY, 0]
        last = mf[LAST, 0]
        eq = self._acc[CASH] + q * last
        prev = self._equity
        ret = eq / prev - 1.0 if prev > 0 else 0.0
        reward, self._rstate = self._reward(ret, self._rstate)
        self._equity = eq
        done = t + 1 > self._end
        nt = t if done else t + 1
        self._t = nt
        obs = self._obs[nt].copy()
        if q != 0:
            ep = mf[EPRICE, 0]
            obs[-2] = 1.0 if q > 0 else -1.0
            u = (last / ep - 1.0) * (1.0 if q > 0 else -1.0)
            obs[-1] = u if -self.obs_clip < u < self.obs_clip else math.copysign(self.obs_clip, u)
        terminated = not eq > 0
        info = {"equity": eq}
        if done or terminated:
            info["episode_summary"] = self.summary()
        return obs, float(reward), terminated, done and not terminated, info

    # --- what happened -----------------------------------------------------------------------------

    @property
    def equity(self) -> float:
        return self._equity

    @property
    def position(self) -> float:
        """Signed units held now."""
        return float(self._mf[QTY, 0])

    def ledger(self) -> Ledger:
        """The broker's books of the episode so far (fills, trades, equity rows, counters)."""
        return ledger_of(*self._state[4:8], self._state[8], self._state[9], self._ai, [self.data.market])

    def episode_bars(self) -> tuple[Bars, Orders]:
        """This episode's bars and the orders sent so far, as ``broker.simulate`` takes them."""
        s, e = self._start, self._end + 1
        d = self.data
        bars = Bars(np.zeros(e - s, np.int64), d.open_ts[s:e], d.close_ts[s:e], d.open[s:e], d.high[s:e],
                    d.low[s:e], d.close[s:e], d.volume[s:e], [d.market])
        o = Orders.none(e - s)
        o.side[:self._acted] = self._side[s:s + self._acted]
        o.price[:] = d.close[s:e]
        return bars, o

    def summary(self) -> dict:
        """Equity, return, fees and trades of the episode so far."""
        n_f, n_t = int(self._ai[NF]), int(self._ai[NT])
        fees = float(self._state[5][2, :n_f].sum())
        return {"equity": self._equity, "return": self._equity / self._cash0 - 1.0, "fees": fees, "trades": n_t,
                "start": self._start, "end": self._end}
