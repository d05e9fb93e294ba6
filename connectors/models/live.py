"""The promoted model and policy of a registry, loaded for a pipeline's scoring step and re-read when a new
version is promoted (a cheap pointer read every ``check_s``; the load happens between batches)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from connectors.models.registry import ModelInfo, Registry

XGB_FILE, POLICY_FILE = "model.ubj", "policy.zip"


class LiveXgb:
    """A loaded XGBoost version: ``score(X)`` is the probability of up; ``meta.features`` the columns it reads."""

    def __init__(self, info: ModelInfo) -> None:
        from engine.models.xgb import load
        self.meta = info
        self.booster = load((info.path / XGB_FILE).read_bytes())

    def score(self, X: np.ndarray) -> np.ndarray:
        from engine.models.xgb import predict
        return predict(self.booster, X)


class LivePolicy:
    """A loaded stable-baselines3 policy: ``act(obs)`` is the argmax action and the action probabilities."""

    def __init__(self, info: ModelInfo) -> None:
        import stable_baselines3
        import torch
        torch.set_num_threads(1)  # shares the machine with the pipeline
        self.meta = info
        algo = getattr(stable_baselines3, str(info.params.get("algo", "ppo")).upper())
        self.model = algo.load(str(info.path / POLICY_FILE), device="cpu")
        obs = info.params.get("observation") or {}
        self.obs_features: list[str] = list(obs.get("features") or obs.get("names") or [])
        self.with_position, self.with_pnl = bool(obs.get("position", False)), bool(obs.get("pnl", False))
        self.extras = int(self.with_position) + int(self.with_pnl)  # values appended after the features
        self.clip = float(obs.get("clip") or 0.0)  # the env clips observations to +-clip (0: no clip)

    def prepare(self, obs: np.ndarray) -> np.ndarray:
        """Observations as the training env made them: NaN and infinities as 0, clipped."""
        obs = np.nan_to_num(np.asarray(obs, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        return np.clip(obs, -self.clip, self.clip) if self.clip else obs

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return policy_act(self.model, obs)


def policy_act(model, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax actions (int64[batch]) and action probabilities (float32[batch, n_actions]) of a stable-baselines3
    model on a batch of observations; for value-based models (DQN) a softmax of the Q-values stands in."""
    import torch

    x = np.asarray(obs, np.float32).reshape((-1, *model.observation_space.shape))
    with torch.no_grad():
        t, _ = model.policy.obs_to_tensor(x)
        if hasattr(model.policy, "get_distribution"):
            probs = model.policy.get_distribution(t).distribution.probs.cpu().numpy()
        else:
            q = model.policy.q_net(t).cpu().numpy()
            e = np.exp(q - q.max(axis=1, keepdims=True))
            probs = e / e.sum(axis=1, keepdims=True)
    probs = probs.astype(np.float32)
    return probs.argmax(axis=1).astype(np.int64), probs


class LiveModels:
    """Keeps a scoring step on the registry's production versions of ``model`` and ``policy``."""

    def __init__(self, root: str | Path, model: str = "xgb", policy: str = "policy", check_s: float = 2.0) -> None:
        self.registry = Registry(root)
        self.names = {"model": model, "policy": policy}
        self.check_s = check_s
        self.versions: dict[str, str | None] = {"model": None, "policy": None}
        self.loaded: dict[str, Any] = {"model": None, "policy": None}
        self.errors = 0
        self._checked = float("-inf")

    def refresh(self, force: bool = False) -> bool:
        """Load what was promoted since the last check; True when something changed."""
        now = time.monotonic()
        if not force and now - self._checked < self.check_s:
            return False
        self._checked = now
        changed = False
        for role, loader in (("model", LiveXgb), ("policy", LivePolicy)):
            version = self.registry.production_version(self.names[role])
            if version == self.versions[role]:
                continue
            try:
                self.loaded[role] = loader(self.registry.get(self.names[role], version)) if version else None
                self.versions[role] = version
                changed = True
            except Exception:  # a half-written or broken artefact: keep scoring with what is loaded, count it
                self.errors += 1
        return changed

    def attach_to(self, scorer) -> None:
        scorer.attach(model=self.loaded["model"], policy=self.loaded["policy"])
