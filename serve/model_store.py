"""Loaded model versions for the Serve model and policy deployments: artefact loaders, a small LRU of
versions, and the production pointer that hot swap follows.

The registry layout is the one of ``connectors.models.registry``: ``root/<name>/<version>/meta.json``
plus artefact files, ``root/<name>/PRODUCTION`` holding the promoted version (replaced atomically).
Reading the pointer is one small file read, cheap enough to poll every half second.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from connectors.models.live import POLICY_FILE, XGB_FILE, LivePolicy, LiveXgb
from connectors.models.registry import Registry, RegistryError
from schemas.errors import CryptoIntelError, InputError

RETRY_FAILED_S = 30.0  # a promoted version that failed to load is tried again after this long

__all__ = ["POLICY_FILE", "XGB_FILE"]  # artefact names, defined with the loaders in connectors.models.live


class ModelServeError(CryptoIntelError):
    """A request the model deployment cannot answer: carries the HTTP status and code of the one error shape."""

    status, code = 500, "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, Any]:
        return {"error": {"status": self.status, "code": self.code, "message": self.message}}


class NoModelError(ModelServeError):
    """No promoted version yet (503: try again after ``ml promote`` / ``rl train``)."""

    status, code = 503, "model_unavailable"


class UnknownVersionError(ModelServeError):
    """The requested version is not in the registry."""

    status, code = 404, "unknown_version"


class ModelLoadError(ModelServeError):
    """A registered version whose artefact cannot be loaded (corrupt file, missing dependency)."""

    status, code = 500, "model_load_failed"


class BadRowsError(ModelServeError, InputError):
    """Feature or observation rows of the wrong shape or type for the model."""

    status, code = 422, "invalid_rows"


@dataclass
class ModelMeta:
    """What serving needs of a version's ``meta.json``."""

    name: str
    version: str
    kind: str
    features: list[str]
    params: dict[str, Any]
    path: Path


def production_version(root: Path, name: str) -> str | None:
    """The promoted version of ``name`` (one small file read), or None when nothing is promoted."""
    return Registry(root).production_version(name)


def read_meta(root: Path, name: str, version: str) -> ModelMeta:
    """The meta of one version; :class:`UnknownVersionError` when it is not registered."""
    try:
        info = Registry(root).get(name, version)
    except RegistryError as e:
        raise UnknownVersionError(str(e)) from None
    return ModelMeta(name=name, version=version, kind=info.kind, features=list(info.features or []),
                     params=dict(info.params or {}), path=Path(info.path))


def _as_matrix(rows: Any, what: str) -> np.ndarray:
    """Rows (list of lists of numbers or nulls) as a float32 matrix; :class:`BadRowsError` otherwise."""
    if not isinstance(rows, (list, np.ndarray)) or len(rows) == 0:
        raise BadRowsError(f"{what} must be a non-empty list of rows")
    try:
        arr = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64) \
            if isinstance(rows, list) else np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadRowsError(f"{what} must be rows of numbers (or null) of one width") from None
    if arr.ndim != 2:
        raise BadRowsError(f"{what} must be a list of rows (a 2-D array), got {arr.ndim} dimension(s)")
    return arr.astype(np.float32)


class XgbModel(LiveXgb):
    """One loaded XGBoost version: ``score(X)`` is the probability of "up"."""

    def __init__(self, meta: ModelMeta) -> None:
        super().__init__(meta)
        self.width = int(self.booster.num_features())
        if meta.features and len(meta.features) != self.width:
            raise InputError(f"{meta.name} {meta.version}: meta lists {len(meta.features)} features, "
                             f"the booster takes {self.width}")

    def rows(self, rows: Any) -> np.ndarray:
        X = _as_matrix(rows, "features")
        if X.shape[1] != self.width:
            raise BadRowsError(f"model {self.meta.name} {self.meta.version} takes {self.width} features per row, "
                               f"got {X.shape[1]}")
        return X

    def align(self, names: list[str], values: list[Any]) -> list[float | None]:
        """A live feature row reordered to this model's feature list; :class:`BadRowsError` if one is missing."""
        if not self.meta.features:
            return list(values)
        where = dict(zip(names, values, strict=False))
        missing = [n for n in self.meta.features if n not in where]
        if missing:
            raise BadRowsError(f"the live feature row lacks {len(missing)} feature(s) model {self.meta.name} "
                               f"{self.meta.version} needs: {', '.join(missing[:5])}")
        return [where[n] for n in self.meta.features]

    def score(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(super().score(X), dtype=np.float64)


class PolicyModel(LivePolicy):
    """One loaded stable-baselines3 policy: ``act(obs)`` is the deterministic (argmax) action and the probabilities."""

    def __init__(self, meta: ModelMeta) -> None:
        try:
            super().__init__(meta)
        except AttributeError:
            raise InputError(f"{meta.name} {meta.version}: unknown stable-baselines3 algorithm "
                             f"{meta.params.get('algo')!r}") from None
        self.width = int(np.prod(self.model.observation_space.shape))
        self.n_actions = int(self.model.action_space.n)
        self.window = int((meta.params.get("observation") or {}).get("window", 1) or 1)

    def rows(self, rows: Any) -> np.ndarray:
        X = _as_matrix(rows, "observation")
        if X.shape[1] != self.width:
            raise BadRowsError(f"policy {self.meta.name} {self.meta.version} takes observations of {self.width} "
                               f"values, got {X.shape[1]}")
        return self.prepare(X)

    def from_row(self, names: list[str], values: list[Any], position: float = 0.0) -> list[float | None]:
        """An observation built from a live feature row (window 1): the policy's features, then position/PnL."""
        if self.window != 1:
            raise BadRowsError(f"policy {self.meta.name} {self.meta.version} observes a window of {self.window} "
                               "rows; the live feed holds the latest row only: send `observation` instead")
        wanted = self.obs_features or list(names)
        where = dict(zip(names, values, strict=False))
        missing = [n for n in wanted if n not in where]
        if missing:
            raise BadRowsError(f"the live feature row lacks {len(missing)} feature(s) policy {self.meta.name} "
                               f"{self.meta.version} observes: {', '.join(missing[:5])}")
        # a caller states its position; unrealised PnL is 0 for a fresh look (no trade history here)
        return [where[n] for n in wanted] + ([position] if self.with_position else []) + \
            ([0.0] if self.with_pnl else [])


LOADERS: dict[str, Callable[[ModelMeta], Any]] = {"xgboost": XgbModel, "rl_policy": PolicyModel}


class ModelStore:
    """The production version of one model name plus an LRU of other versions, loaded off the request path.

    ``refresh()`` reads the production pointer and, when it moved, loads the new version and then
    swaps it in with one assignment: requests already holding the old model finish with it, later
    ones get the new one, none waits for a load.
    """

    def __init__(self, root: str | Path, name: str, kind: str, cache_size: int = 3) -> None:
        if kind not in LOADERS:
            raise InputError(f"unknown model kind {kind!r}; known: {', '.join(LOADERS)}")
        self.root, self.name, self.kind = Path(root), name, kind
        self.cache_size = max(1, cache_size)
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.current: Any | None = None
        self.last_error: str | None = None
        self.failed_version: str | None = None
        self.failed_at = 0.0

    def _load(self, version: str) -> Any:
        with self._lock:
            hit = self._cache.get(version)
            if hit is not None:
                self._cache.move_to_end(version)
                return hit
        meta = read_meta(self.root, self.name, version)
        if meta.kind and meta.kind != self.kind:
            raise UnknownVersionError(f"{self.name} {version} is a {meta.kind} artefact, not {self.kind}")
        try:
            model = LOADERS[self.kind](meta)
        except Exception as e:  # noqa: BLE001 - xgboost, torch and zip errors have no common base
            raise ModelLoadError(f"{self.name} {version} could not be loaded: {type(e).__name__}: {e}"[:500]) from e
        with self._lock:
            self._cache[version] = model
            self._cache.move_to_end(version)
            while len(self._cache) > self.cache_size:
                old, _ = self._cache.popitem(last=False)
                if self.current is not None and old == self.current.meta.version:
                    self._cache[old] = self.current  # never evict the production model
        return model

    def refresh(self) -> bool:
        """Follow the production pointer; True when the current model changed."""
        version = production_version(self.root, self.name)
        if version is None or (self.current is not None and self.current.meta.version == version):
            return False
        if version == self.failed_version and time.monotonic() - self.failed_at < RETRY_FAILED_S:
            return False  # failed a moment ago: try again later (a transient error), not on every poll
        try:
            model = self._load(version)
        except Exception:
            self.failed_version, self.failed_at = version, time.monotonic()
            raise
        self.current = model  # the swap: one reference assignment
        self.last_error = self.failed_version = None
        return True

    def get(self, version: str | None) -> Any:
        """The model for a request: the production one, or a named version (loaded on first use)."""
        current = self.current
        if version is None or (current is not None and current.meta.version == version):
            if current is None:
                raise NoModelError(f"no promoted version of {self.name!r} in {self.root}; train one and promote it "
                                   f"(crypto-intel ml promote / rl train)")
            return current
        return self._load(version)

    def cached(self, version: str | None) -> Any | None:
        """The model for ``version`` if it needs no load (production or in the LRU), else None."""
        current = self.current
        if version is None or (current is not None and current.meta.version == version):
            return current
        with self._lock:
            return self._cache.get(version)

    def cached_versions(self) -> list[str]:
        with self._lock:
            return list(self._cache)
