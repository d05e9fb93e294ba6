"""Training jobs: stable-baselines3 on vectorised copies of the trading env over the training part of the
data, with checkpoints every ``checkpoint_every`` steps and resume, then the held-out evaluation; run
in-process (``train``) or as one Ray task (``train_on_ray``), which is how ``crypto-intel rl train`` runs.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rl.data import load_market
from rl.policy import POLICY_FILE, algo_class
from schemas.errors import ConfigError

_CKPT = re.compile(r"^rl_model_(\d+)_steps\.zip$")


@dataclass
class TrainSpec:
    """Everything a training run depends on (saved next to its checkpoints and in the registry)."""

    inputs: list[str]
    market: str | None = None
    algo: str = "ppo"
    timesteps: int = 20_000
    actions: str = "3"
    reward: str = "pnl"
    reward_params: dict = field(default_factory=dict)
    window_bars: int = 512
    n_envs: int = 2
    n_steps: int = 256  # PPO/A2C rollout length per env
    batch_size: int = 64
    learning_rate: float = 3e-4
    seed: int = 0
    eval_fraction: float = 0.2
    fee: float = 0.001
    slippage_bps: float = 0.0
    size: str = "equity:1"
    leverage: float = 1.0
    cash: float = 10_000.0
    checkpoint_dir: str | None = None
    checkpoint_every: int = 5_000
    resume: bool = False
    random_seeds: int = 5

    def env_kwargs(self) -> dict:
        return {"actions": self.actions, "reward": self.reward, "reward_params": dict(self.reward_params),
                "fee": self.fee, "slippage_bps": self.slippage_bps, "size": self.size, "leverage": self.leverage,
                "cash": self.cash}

    def check(self) -> None:
        algo_class(self.algo)
        if self.timesteps < 1 or self.n_envs < 1 or self.n_steps < 2 or self.batch_size < 2:
            raise ConfigError("--timesteps, --n-envs, --n-steps and --batch-size must be positive")
        if self.algo == "dqn" and self.actions not in ("3", "5"):
            raise ConfigError("--actions must be 3 or 5")
        if not 0 < self.eval_fraction < 1:
            raise ConfigError(f"--eval-fraction must be between 0 and 1, got {self.eval_fraction}")
        if self.resume and not self.checkpoint_dir:
            raise ConfigError("--resume needs --checkpoint-dir (where the checkpoints are)")


@dataclass
class TrainResult:
    policy: bytes  # the SB3 zip
    spec: dict
    evaluation: dict
    observation: dict
    data_hash: str
    window: dict  # training rows' time span
    timesteps: int  # total trained, resumed runs included
    seconds: float
    resumed_from: int = 0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def latest_checkpoint(directory: str | Path) -> tuple[Path | None, int]:
    d = Path(directory)
    best, steps = None, -1
    if d.is_dir():
        for p in d.iterdir():
            m = _CKPT.match(p.name)
            if m and int(m.group(1)) > steps:
                best, steps = p, int(m.group(1))
    return best, max(steps, 0)


def _progress_callback(total: int, start: int):
    from stable_baselines3.common.callbacks import BaseCallback

    class Progress(BaseCallback):
        """A progress line on stderr about every 10% (and the episode returns seen so far)."""

        def __init__(self) -> None:
            super().__init__()
            self.t0 = time.monotonic()
            self.next = start + max(total // 10, 1)
            self.returns: list[float] = []

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                ep = info.get("episode")
                if ep:
                    self.returns.append(float(ep["r"]))
            n = self.num_timesteps
            if n >= self.next:
                self.next += max(total // 10, 1)
                rate = (n - start) / max(time.monotonic() - self.t0, 1e-9)
                last = np.mean(self.returns[-20:]) if self.returns else float("nan")
                _say(f"rl train {n:,}/{start + total:,} steps ({(n - start) / total:.0%}), {rate:,.0f} steps/s, "
                     f"mean episode reward {last:.3f}")
            return True

    return Progress()


def train(spec: TrainSpec) -> TrainResult:
    """Train (or resume) on the rows before the held-out window; evaluate on it; return the policy bytes."""
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv
    import torch

    from rl.env import TradingEnv
    from rl.evaluate import evaluate

    spec.check()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = load_market(spec.inputs, spec.market)
    split = data.split(spec.eval_fraction)
    usable = len(data) - data.warmup
    hi_frac = (split - data.warmup) / usable
    kw = spec.env_kwargs()
    train_rows = split - data.warmup
    window = min(spec.window_bars, train_rows)
    _say(f"rl train: {data.market}, {len(data):,} bars x {len(data.names)} features; training on rows "
         f"{data.warmup:,}..{split - 1:,}, held out {split:,}..{len(data) - 1:,}; {spec.algo} {spec.timesteps:,} steps "
         f"on {spec.n_envs} env(s), reward {spec.reward}")

    def make(rank: int):
        def _f():
            return Monitor(TradingEnv(candles=data, window_bars=window, segment=(0.0, hi_frac), **kw))
        return _f

    venv = DummyVecEnv([make(k) for k in range(spec.n_envs)])
    venv.seed(spec.seed)
    cls = algo_class(spec.algo)
    resumed = 0
    ckpt_dir = Path(spec.checkpoint_dir) if spec.checkpoint_dir else None
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    if spec.resume:
        path, resumed = latest_checkpoint(ckpt_dir)
        if path is None:
            raise ConfigError(f"--resume: no checkpoint (rl_model_<steps>_steps.zip) in {ckpt_dir}")
        model = cls.load(str(path), env=venv, device="cpu")
        _say(f"rl train: resumed from {path.name} ({resumed:,} steps)")
    else:
        extra = {"n_steps": spec.n_steps, "batch_size": spec.batch_size} if spec.algo == "ppo" else \
            {"n_steps": spec.n_steps} if spec.algo == "a2c" else {}
        model = cls("MlpPolicy", venv, seed=spec.seed, learning_rate=spec.learning_rate, device="cpu", verbose=0,
                    **extra)
    remaining = spec.timesteps - resumed if spec.resume else spec.timesteps
    callbacks = [_progress_callback(max(remaining, 1), resumed)]
    if ckpt_dir is not None:
        (ckpt_dir / "spec.json").write_text(json.dumps(asdict(spec), indent=2, default=str) + "\n")
        callbacks.append(CheckpointCallback(save_freq=max(spec.checkpoint_every // spec.n_envs, 1),
                                            save_path=str(ckpt_dir), name_prefix="rl_model"))
    if remaining > 0:
        model.learn(total_timesteps=remaining, callback=CallbackList(callbacks), reset_num_timesteps=not spec.resume,
                    progress_bar=False)
    total = int(model.num_timesteps)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / POLICY_FILE
        model.save(str(p))
        blob = p.read_bytes()
    if ckpt_dir is not None:  # the final state too, so a later --resume continues from here
        model.save(str(ckpt_dir / f"rl_model_{total}_steps.zip"))
    _say(f"rl train: {total:,} steps in {time.perf_counter() - t0:.1f}s; evaluating on the held-out window")

    def act(obs: np.ndarray) -> int:
        a, _ = model.predict(obs, deterministic=True)
        return int(a)

    report = evaluate(data, kw, spec.eval_fraction, act, label=f"policy ({spec.algo})",
                      random_seeds=spec.random_seeds)
    observation = {"features": list(data.names), "window": 1, "position": True, "pnl": True,
                   "clip": 10.0, "nan": 0.0}
    window_ts = {"start_ts": int(data.open_ts[data.warmup]), "end_ts": int(data.close_ts[split - 1])}
    venv.close()
    return TrainResult(blob, asdict(spec), report, observation, data.data_hash, window_ts, total,
                       time.perf_counter() - t0, resumed)


def train_on_ray(spec: TrainSpec, num_cpus: float = 1.0) -> TrainResult:
    """``train`` as one Ray task (Ray must be initialised); its progress lines reach the driver's stderr."""
    import ray

    task = ray.remote(num_cpus=num_cpus, max_retries=0)(train)
    return ray.get(task.remote(spec))
