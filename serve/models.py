"""Ray Serve deployments of the promoted XGBoost model and RL policy, with hot swap.

Each replica follows the registry's production pointer from a background thread (one small file
read every ``poll_s``); a newly promoted version is loaded there, off the request path, and swapped
in with one reference assignment, so a promotion never drops or delays a request. Other versions
named by a request are loaded once into a small LRU. The deployments have no HTTP route of their
own: the API (``serve.models_api``) authenticates, rate-limits and calls them through handles.

Replies are plain dicts; a request the model cannot answer comes back as
``{"error": {"status", "code", "message"}}`` for the API to turn into its one error shape.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from serve.model_store import BadRowsError, ModelServeError, ModelStore

log = logging.getLogger(__name__)

ML_APP, RL_APP = "ml", "rl"  # Serve application names (no route prefix: reached through the API only)
XGB_DEPLOYMENT, POLICY_DEPLOYMENT = "XgbModel", "Policy"
DEFAULT_MODEL, DEFAULT_POLICY = "xgb", "policy"
MAX_ROWS = 10_000
POLL_S = 0.5


def registry_root(data_dir: str | Path = "data") -> Path:
    """The registry root: ``CRYPTO_INTEL_MODELS_DIR`` or ``<data_dir>/models``."""
    return Path(os.environ.get("CRYPTO_INTEL_MODELS_DIR") or Path(data_dir) / "models")


class _Watched:
    """A model store kept on the production version by a daemon thread."""

    kind = ""

    def __init__(self, root: str, name: str, poll_s: float = POLL_S, cache_size: int = 3) -> None:
        self.store = ModelStore(root, name, self.kind, cache_size=cache_size)
        self._refresh()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(poll_s,), daemon=True, name=f"watch-{name}")
        self._thread.start()

    def _watch(self, poll_s: float) -> None:
        while not self._stop.wait(poll_s):
            self._refresh()

    def _refresh(self) -> None:
        try:
            if self.store.refresh():
                log.info("%s: now serving %s", self.store.name, self.store.current.meta.version)
        except Exception as e:  # noqa: BLE001 - a broken artefact must not stop the watcher; the old model stays
            message = f"{type(e).__name__}: {e}"
            if message != self.store.last_error:
                log.warning("%s: could not load the promoted version (%s); still serving %s", self.store.name,
                            message, self.store.current.meta.version if self.store.current else "nothing")
            self.store.last_error = message

    async def _model(self, version: str | None) -> Any:
        model = self.store.cached(version)
        return model if model is not None else await asyncio.to_thread(self.store.get, version)

    async def info(self) -> dict[str, Any]:
        """What this replica serves: name, production version, loaded versions, last load error."""
        cur = self.store.current
        return {"name": self.store.name, "version": cur.meta.version if cur else None,
                "loaded": self.store.cached_versions(), "last_error": self.store.last_error}

    def __del__(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()


def _limit_rows(req: dict[str, Any], key: str) -> Any:
    rows = req.get(key)
    if isinstance(rows, list) and len(rows) > MAX_ROWS:
        raise BadRowsError(f"at most {MAX_ROWS} rows per request, got {len(rows)}")
    return rows


@serve.deployment(name=XGB_DEPLOYMENT, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
class XgbDeployment(_Watched):
    """Scores feature rows with the promoted XGBoost model (or a named version); calls are batched."""

    kind = "xgboost"

    async def predict(self, req: dict[str, Any]) -> dict[str, Any]:
        """``{"rows": [[...]]}`` or a live row ``{"names", "values"}``, optional ``version`` -> scores."""
        try:
            model = await self._model(req.get("version"))
            rows = [model.align(req["names"], req["values"])] if "names" in req else _limit_rows(req, "rows")
            X = model.rows(rows)
            scores = await self._score((model, X))
            return {"model": model.meta.name, "version": model.meta.version, "scores": scores.tolist()}
        except ModelServeError as e:
            return e.as_dict()

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)
    async def _score(self, items: list[tuple[Any, np.ndarray]]) -> list[np.ndarray]:
        # one predict per model version in the batch: concurrent small requests share one call
        out: list[np.ndarray | None] = [None] * len(items)
        groups: dict[int, list[int]] = {}
        for i, (model, _) in enumerate(items):
            groups.setdefault(id(model), []).append(i)
        for idx in groups.values():
            model = items[idx[0]][0]
            X = items[idx[0]][1] if len(idx) == 1 else np.concatenate([items[i][1] for i in idx])
            scores = model.score(X)
            start = 0
            for i in idx:
                n = len(items[i][1])
                out[i] = scores[start:start + n]
                start += n
        return out


@serve.deployment(name=POLICY_DEPLOYMENT, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
class PolicyDeployment(_Watched):
    """Acts with the promoted RL policy (or a named version): deterministic argmax action and probabilities."""

    kind = "rl_policy"

    async def act(self, req: dict[str, Any]) -> dict[str, Any]:
        """``{"rows": [[...]]}`` or a live row ``{"names", "values", "position"}``, optional ``version``."""
        try:
            model = await self._model(req.get("version"))
            rows = [model.from_row(req["names"], req["values"], float(req.get("position") or 0.0))] \
                if "names" in req else _limit_rows(req, "rows")
            obs = model.rows(rows)
            actions, probs = await self._act((model, obs))
            return {"model": model.meta.name, "version": model.meta.version, "actions": actions.tolist(),
                    "probabilities": probs.tolist()}
        except ModelServeError as e:
            return e.as_dict()

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)
    async def _act(self, items: list[tuple[Any, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        out: list[Any] = [None] * len(items)
        groups: dict[int, list[int]] = {}
        for i, (model, _) in enumerate(items):
            groups.setdefault(id(model), []).append(i)
        for idx in groups.values():
            model = items[idx[0]][0]
            obs = np.concatenate([items[i][1] for i in idx])
            actions, probs = model.act(obs)
            start = 0
            for i in idx:
                n = len(items[i][1])
                out[i] = (actions[start:start + n], probs[start:start + n])
                start += n
        return out


def deploy_models(registry_root: str | Path, model_name: str = DEFAULT_MODEL, policy_name: str = DEFAULT_POLICY,
                  replicas: int = 1, num_cpus: float = 0, poll_s: float = POLL_S) -> dict[str, str | None]:
    """Deploy the model and policy deployments next to the API (Ray and Serve must be up); return what
    each serves now. A name with no promoted version answers 503 until one is promoted (hot swap)."""
    root = str(Path(registry_root).resolve())
    # no access log line per call: the API already logs each HTTP request once
    opts = {"num_replicas": replicas, "ray_actor_options": {"num_cpus": num_cpus},
            "logging_config": {"enable_access_log": False}}
    serve.run(XgbDeployment.options(**opts).bind(root, model_name, poll_s), name=ML_APP, route_prefix=None)
    serve.run(PolicyDeployment.options(**opts).bind(root, policy_name, poll_s), name=RL_APP, route_prefix=None)
    ml = serve.get_deployment_handle(XGB_DEPLOYMENT, app_name=ML_APP)
    rl = serve.get_deployment_handle(POLICY_DEPLOYMENT, app_name=RL_APP)
    return {model_name: ml.info.remote().result()["version"], policy_name: rl.info.remote().result()["version"]}


def undeploy_models() -> None:
    """Remove the model and policy applications (the API keeps running and answers 503 for them)."""
    for app in (ML_APP, RL_APP):
        serve.delete(app, _blocking=True)
