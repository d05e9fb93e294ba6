"""The scoring step: the promoted model's score and the policy's action on every feature row, as columns that
signal rules read (``model_score > 0.6``, ``policy_action == 1``).

Models are scored on the whole batch in one call each (never a call per bar). The operator holds no model
of its own: whoever hosts it (a shard actor, a backtest) attaches loaded ones, so this module does no I/O.
Without a model the columns are NaN and rules that read them do not fire.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schemas.batches import FeatureBatch
from schemas.errors import InputError

COLUMNS = ("model_score", "policy_action")


class ScoreOperator:
    """Appends ``model_score`` (probability of up) and ``policy_action`` (the policy's argmax action id)."""

    name = "scores"
    version = "1"

    def __init__(self) -> None:
        self.model: Any = None  # .features (names it reads) and .score(X) -> probabilities
        self.policy: Any = None  # .obs_features, .extras (position/PnL values appended), .prepare and .act(obs)
        self.stats = {"scored_rows": 0, "acted_rows": 0, "unscorable_batches": 0}
        self.last_error: str | None = None

    def attach(self, model: Any = None, policy: Any = None) -> None:
        """Score with these from the next batch on (None leaves that column NaN)."""
        self.model, self.policy = model, policy

    def update(self, batch: FeatureBatch) -> FeatureBatch:
        n = len(batch)
        out = np.full((n, len(COLUMNS)), np.nan)
        if n and batch.model_names is not None:
            model, policy = self.model, self.policy  # one read each: a swap mid-batch changes nothing
            try:
                if model is not None:
                    X = _select(batch, list(model.meta.features or batch.model_names))
                    out[:, 0] = model.score(X)
                    self.stats["scored_rows"] += n
                if policy is not None:
                    obs = _select(batch, policy.obs_features or list(batch.model_names))
                    if policy.extras:  # live rows score as if flat: position and PnL 0
                        obs = np.hstack([obs, np.zeros((n, policy.extras), obs.dtype)])
                    obs = policy.prepare(obs)
                    actions, _ = policy.act(obs)
                    out[:, 1] = actions
                    self.stats["acted_rows"] += n
            except (ValueError, InputError) as e:
                # a model trained on other features (another timeframe set, an older feature list) or of another
                # width: the stream goes on unscored, counted and said, instead of stopping the pipeline
                self.stats["unscorable_batches"] += 1
                self.last_error = str(e)
        batch.names = list(batch.names) + list(COLUMNS)
        batch.values = np.hstack([batch.values, out]) if n else np.empty((0, len(batch.names)))
        return batch

    def flush(self) -> None:
        return None

    def snapshot(self) -> bytes:
        return b""  # stateless: the models come from the registry

    def restore(self, data: bytes) -> None:
        return None

    def reset(self) -> None:
        return None


def _select(batch: FeatureBatch, names: list[str]) -> np.ndarray:
    index = {n: i for i, n in enumerate(batch.model_names)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ValueError(f"the model reads feature(s) the pipeline does not compute: {', '.join(missing[:5])}")
    return np.ascontiguousarray(batch.model_values[:, [index[n] for n in names]], np.float32)
