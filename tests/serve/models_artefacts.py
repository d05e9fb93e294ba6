"""Small real model artefacts for the serving tests and ``python -m benchmarks ml``: an XGBoost booster
trained on features of a real candle file (tests/data) and a stable-baselines3 PPO policy trained a few
hundred steps on an environment over the same rows, registered in the registry layout serving reads."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pyarrow.feather as feather

from connectors.models.registry import Registry
from tests.data_paths import DATA_ROOT

CANDLES = DATA_ROOT / "candles" / "LTC_BTC-5m.feather"
FEATURES = ["ret_1", "ret_3", "ret_12", "range", "vol_ratio"]


def feature_rows(path: Path = CANDLES) -> tuple[np.ndarray, np.ndarray]:
    """(X float32 [n, 5], y {0, 1}: next bar closes up) from a real candle file; rows with warm-up dropped."""
    t = feather.read_table(path)
    c, h, lo, v = (t.column(k).to_numpy().astype(np.float64) for k in ("close", "high", "low", "volume"))
    lc = np.log(c)
    ret = lambda k: np.concatenate([np.full(k, np.nan), lc[k:] - lc[:-k]])  # noqa: E731
    vol_mean = np.convolve(v, np.ones(12) / 12, mode="full")[:len(v)]
    X = np.column_stack([ret(1), ret(3), ret(12), np.log(h / lo), v / np.where(vol_mean > 0, vol_mean, 1.0)])
    y = np.concatenate([(lc[1:] > lc[:-1]).astype(np.float32), [0.0]])
    keep = slice(12, len(c) - 1)
    return X[keep].astype(np.float32), y[keep]


def register_xgb(root: Path, rounds: int = 20, depth: int = 3, name: str = "xgb", promote: bool = False):
    """Train and register one booster; returns (version, booster)."""
    import xgboost
    X, y = feature_rows()
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": depth, "eta": 0.1, "seed": 0, "nthread": 1},
                            xgboost.DMatrix(X, label=y), num_boost_round=rounds)
    reg = Registry(root)
    info = reg.register(name, "xgboost", files={"model.ubj": bytes(booster.save_raw("ubj"))}, features=FEATURES,
                        window={"start_ts": 0, "end_ts": 0}, data_hash="test",
                        params={"features": FEATURES, "timeframe": "5m", "label": "sign:1", "rounds": rounds})
    if promote:
        reg.promote(name, info.version)
    return info.version, booster


class RowsEnv(gym.Env):
    """Walks over the real feature rows; reward: next return times the position (0 flat, 1 long, 2 short)."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X, self.y = np.nan_to_num(X), y
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (X.shape[1],), np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = int(self.np_random.integers(0, len(self.X) - 200))
        return self.X[self.t], {}

    def step(self, action):
        sign = (0.0, 1.0, -1.0)[int(action)]
        reward = sign * float(self.X[self.t + 1, 0])
        self.t += 1
        return self.X[self.t], reward, self.t % 200 == 0, False, {}


def register_policy(root: Path, steps: int = 256, name: str = "policy", promote: bool = False, seed: int = 0):
    """Train and register one PPO policy over the feature rows; returns (version, model)."""
    import tempfile

    from stable_baselines3 import PPO
    X, y = feature_rows()
    model = PPO("MlpPolicy", RowsEnv(X, y), n_steps=64, batch_size=32, n_epochs=1, seed=seed, device="cpu",
                policy_kwargs={"net_arch": [16]})
    model.learn(total_timesteps=steps)
    with tempfile.TemporaryDirectory() as d:
        model.save(Path(d) / "policy.zip")
        reg = Registry(root)
        info = reg.register(name, "rl_policy", files={"policy.zip": Path(d) / "policy.zip"}, features=FEATURES,
                            params={"algo": "ppo", "actions": "3",
                                    "observation": {"features": FEATURES, "window": 1, "position": False,
                                                    "pnl": False}})
    if promote:
        reg.promote(name, info.version)
    return info.version, model
