"""Trained policies as artefacts: ``load(path) -> Policy`` whose ``act(obs)`` gives deterministic actions and
their probabilities (what Serve's ``/rl/v1/act`` answers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from connectors.models.live import policy_act
from schemas.errors import InputError

POLICY_FILE = "policy.zip"
ALGOS = ("ppo", "a2c", "dqn")


class Policy:
    """A stable-baselines3 model loaded for acting on CPU."""

    def __init__(self, model, algo: str) -> None:
        self.model, self.algo = model, algo
        self.obs_dim = int(np.prod(model.observation_space.shape))
        self.n_actions = int(model.action_space.n)

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Argmax actions (int64[batch]) and action probabilities (float32[batch, n_actions]) of a batch."""
        return policy_act(self.model, np.asarray(obs, np.float32).reshape(-1, self.obs_dim))


def algo_class(algo: str):
    import stable_baselines3

    if algo.lower() not in ALGOS:
        raise InputError(f"unknown algorithm {algo!r}; choose from {', '.join(ALGOS)}")
    return getattr(stable_baselines3, algo.upper())


def load(path: str | Path, algo: str | None = None) -> Policy:
    """A policy from a ``policy.zip`` (or a registry version directory holding one; its meta names the algo)."""
    p = Path(path)
    if p.is_dir():
        meta = p / "meta.json"
        if algo is None and meta.is_file():
            import json
            algo = str(json.loads(meta.read_text()).get("params", {}).get("algo", "ppo"))
        p = p / POLICY_FILE
    if not p.is_file():
        raise InputError(f"{p}: no such policy file")
    algo = (algo or "ppo").lower()
    return Policy(algo_class(algo).load(str(p), device="cpu"), algo)
