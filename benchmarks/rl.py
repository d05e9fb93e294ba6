"""RL environment speed: steps per second of crypto_intel/Trading-v0 with random actions, one env and
vectorised, next to a plain gymnasium reference env doing the same bookkeeping in pure Python, in one run.

- our env alone (``env.unwrapped``) and as ``gymnasium.make`` returns it (order-enforcing and passive
  checker wrappers), over the real 5-minute ADA/BTC bars of tests/data and their feature rows;
- vectorised: ``gymnasium.vector.SyncVectorEnv`` and stable-baselines3's ``DummyVecEnv`` of N copies;
- reference: a minimal pure-Python gymnasium env over the same feature matrix with the same accounting
  (orders at the close fill at the next open, taker fee on both legs, equity marked at the close, the
  position and unrealised return appended to the observation).
- FreqAI's Base5ActionRLEnv needs freqtrade (and its own dependency set) in a separate environment; when
  ``BENCH_RL_FREQAI_PYTHON`` names such an interpreter it is measured on the same feature matrix,
  otherwise it is skipped and said so.

Target: single env >= 67,000 steps/s (10x the ~6,700 FreqAI's env was measured at on these machines).
Sizes: BENCH_RL_STEPS (default 200,000), BENCH_RL_ENVS (vectorised copies, default 8), BENCH_RL_REPEAT (best of,
default 3).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import gymnasium
import numpy as np
from gymnasium import spaces

import rl
from rl.env import TradingEnv

CANDLES = str(Path(__file__).resolve().parents[1] / "tests" / "data" / "candles" / "ADA_BTC-5m.feather")
STEPS = int(os.environ.get("BENCH_RL_STEPS", "200000"))
N_ENVS = int(os.environ.get("BENCH_RL_ENVS", "8"))
REPEAT = int(os.environ.get("BENCH_RL_REPEAT", "3"))
TARGET = 67_000
FREQAI_MEASURED = 6_700


class ReferenceEnv(gymnasium.Env):
    """The same bookkeeping in plain Python: target position actions, next-open fills, fees, marked equity."""

    def __init__(self, features: np.ndarray, open_: np.ndarray, close: np.ndarray, window: int = 1024,
                 fee: float = 0.001, cash: float = 10_000.0) -> None:
        self.f = features.astype(np.float32)
        self.o, self.c = open_.tolist(), close.tolist()
        self.window, self.fee, self.cash0 = window, fee, cash
        n = self.f.shape[1]
        self.observation_space = spaces.Box(-10, 10, shape=(n + 2,), dtype=np.float32)
        self.action_space = spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = int(self.np_random.integers(0, len(self.c) - self.window))
        self.end = self.t + self.window - 1
        self.cash, self.qty, self.entry, self.pending = self.cash0, 0.0, 0.0, None
        self.equity = self.cash
        return np.concatenate([self.f[self.t], [0.0, 0.0]]).astype(np.float32), {}

    def step(self, action):
        self.pending = (0, 1, -1)[int(action)]
        t = self.t + 1
        done = t > self.end
        if not done:
            want = self.pending
            held = 0 if self.qty == 0 else (1 if self.qty > 0 else -1)
            if want != held:
                px = self.o[t]
                if self.qty:  # close at the open
                    self.cash += self.qty * px - abs(self.qty) * px * self.fee
                    self.qty = 0.0
                if want:
                    eq = self.cash
                    q = eq / (px * (1 + self.fee))
                    self.cash -= want * q * px + q * px * self.fee
                    self.qty, self.entry = want * q, px
            self.t = t
        last = self.c[self.t]
        eq = self.cash + self.qty * last
        reward = (eq / self.equity - 1.0) * 100.0
        self.equity = eq
        pos = 0.0 if self.qty == 0 else (1.0 if self.qty > 0 else -1.0)
        pnl = (last / self.entry - 1.0) * pos if self.qty else 0.0
        obs = np.concatenate([self.f[self.t], [pos, pnl]]).astype(np.float32)
        return obs, reward, False, done, {"equity": eq}


def _rate(env, n: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, env.action_space.n, n).tolist()
    env.reset(seed=seed)
    best = 0.0
    for _ in range(REPEAT):
        t = time.perf_counter()
        for a in actions:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()
        best = max(best, n / (time.perf_counter() - t))
    return best


def _vec_rate(venv, n: int, n_envs: int, sb3: bool = False) -> float:
    rng = np.random.default_rng(1)
    batches = [rng.integers(0, 3, n_envs) for _ in range(max(n // n_envs, 1))]
    if sb3:
        venv.seed(1)
        venv.reset()
    else:
        venv.reset(seed=1)
    best = 0.0
    for _ in range(REPEAT):
        t = time.perf_counter()
        for a in batches:
            venv.step(a)
        best = max(best, len(batches) * n_envs / (time.perf_counter() - t))
    return best


def main() -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    t0 = time.perf_counter()
    env = gymnasium.make(rl.ENV_ID, candles=CANDLES, window_bars=1024)
    u: TradingEnv = env.unwrapped
    d = u.data
    print(f"{len(d):,} real 5m bars of {d.market}, {len(d.names)} features (+ position, unrealised return); "
          f"env built in {time.perf_counter() - t0:.1f}s; random actions, best of {REPEAT} x {STEPS:,} steps")
    raw = _rate(u, STEPS)
    wrapped = _rate(env, STEPS)
    ref = _rate(ReferenceEnv(u._obs[:, :-2], d.open, d.close), STEPS)
    sync = gymnasium.vector.SyncVectorEnv([lambda: gymnasium.make(rl.ENV_ID, candles=CANDLES, window_bars=1024)
                                           for _ in range(N_ENVS)])
    v_sync = _vec_rate(sync, STEPS, N_ENVS)
    sync.close()
    dummy = DummyVecEnv([lambda: TradingEnv(candles=CANDLES, window_bars=1024) for _ in range(N_ENVS)])
    v_dummy = _vec_rate(dummy, STEPS, N_ENVS, sb3=True)
    dummy.close()
    rows = [("ours, one env (unwrapped)", raw), ("ours, one env (gymnasium.make wrappers)", wrapped),
            (f"ours, SyncVectorEnv x {N_ENVS}", v_sync), (f"ours, SB3 DummyVecEnv x {N_ENVS}", v_dummy),
            ("reference: plain-Python gymnasium env, same bookkeeping", ref)]
    for name, r in rows:
        print(f"  {name:58} {r:>12,.0f} steps/s")
    freqai = os.environ.get("BENCH_RL_FREQAI_PYTHON")
    if freqai and Path(freqai).is_file():
        try:
            out = subprocess.run([freqai, "-c", "import freqtrade; print(freqtrade.__version__)"], capture_output=True,
                                 text=True, timeout=120)
            print(f"  FreqAI interpreter {freqai}: freqtrade {out.stdout.strip() or out.stderr.strip()[-200:]} "
                  "(its Base5ActionRLEnv run is not wired in this benchmark yet)")
        except (OSError, subprocess.SubprocessError) as e:
            print(f"  FreqAI interpreter {freqai} unusable: {e}")
    else:
        print(f"  FreqAI Base5ActionRLEnv: skipped (freqtrade is not installed in a separate benchmark venv; set "
              f"BENCH_RL_FREQAI_PYTHON); the issue's figure for it on these machines: ~{FREQAI_MEASURED:,} steps/s")
    print(f"  one env vs the plain-Python reference: {raw / ref:.1f}x (wrapped {wrapped / ref:.1f}x)")
    print(f"  one env vs FreqAI's quoted ~{FREQAI_MEASURED:,}: {raw / FREQAI_MEASURED:.1f}x")
    print(f"  single env target >= {TARGET:,} steps/s: {'met' if raw >= TARGET else 'NOT met'} ({raw:,.0f}; "
          f"through gymnasium.make {wrapped:,.0f})")
