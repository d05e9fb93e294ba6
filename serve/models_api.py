"""The model routes of the HTTP API: ``/ml/v1/predict``, ``/rl/v1/act``, ``/ml/v1/anomaly/detect`` and
``/ml/v1/patterns/wallet/{address}``, behind the same API keys, roles and rate limits as ``/api/v1``.

Predict and act go through Serve handles to the model and policy deployments of ``serve.models``
(batched there); a ``market`` request is scored on that market's latest closed feature row, which the
live pipeline keeps in the Redis latest-state cache (kind ``features``, key ``market|timeframe``).
Anomaly scores and wallet patterns are computed here, from pure functions over stored rows.
"""


import asyncio
import math
import time
from collections import Counter
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from serve.api import ApiError, Services, Text, clean
from serve.api_models import ActionItem, AnomalyScoresItem, PredictionItem, WalletPatternsItem
from serve.models import MAX_ROWS, ML_APP, POLICY_DEPLOYMENT, RL_APP, XGB_DEPLOYMENT
from serve.openapi import errors

CALL_TIMEOUT_S = 10.0
MISS_RETRY_S = 2.0  # how long a missing deployment is remembered before asking the controller again
MAX_WIDTH = 4096

Row = Annotated[list[Annotated[float | None, Field(allow_inf_nan=False)]], Field(min_length=1, max_length=MAX_WIDTH)]
Rows = Annotated[list[Row], Field(min_length=1, max_length=MAX_ROWS)]
MarketName = Annotated[str, Field(min_length=1, max_length=64), Text]
Timeframe = Annotated[str, Field(max_length=8, pattern=r"^[0-9]+[smhdw]$")]
Version = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")]


class _OneSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    _rows_field = "features"

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("market", self._rows_field) if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"send exactly one of `market` or `{self._rows_field}`")
        return self


class PredictRequest(_OneSource):
    """Score a market's latest closed bar, or explicit feature rows (null = missing), with the production
    model or a named ``version``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"market": "BINANCE:BTCUSDT", "timeframe": "5m"}, {"features": [[0.001, -0.002, 0.004, 0.003, 1.2]]}]})

    market: MarketName | None = None
    timeframe: Timeframe | None = None
    features: Rows | None = None
    version: Version | None = None


class ActRequest(_OneSource):
    """Act on a market's latest closed bar (flat unless ``position`` is given), or on explicit observations."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"market": "BINANCE:BTCUSDT", "timeframe": "5m", "position": 0.0},
        {"observation": [[0.001, -0.002, 0.004, 0.003, 1.2]]}]})

    _rows_field = "observation"
    market: MarketName | None = None
    timeframe: Timeframe | None = None
    observation: Rows | None = None
    position: Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)] = 0.0
    version: Version | None = None


class AnomalyRequest(BaseModel):
    """Anomaly scores for explicit ``rows``, a market's recent bars, or a wallet's recent transfers."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"rows": [[1.0, 10.0], [1.1, 10.2], [0.9, 9.9], [1.0, 10.1], [9.0, 95.0]], "z_threshold": 3.5},
        {"market": "BINANCE:BTCUSDT", "timeframe": "5m", "limit": 200}]})
    rows: Rows | None = None
    market: MarketName | None = None
    timeframe: Timeframe | None = None
    wallet: Annotated[str, Field(min_length=1, max_length=128), Text] | None = None
    chain: Annotated[str, Field(min_length=1, max_length=32), Text] = "ethereum"
    limit: Annotated[int, Field(ge=2, le=999, description="bars or transfers to score")] = 500
    z_threshold: Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)] = 3.5
    iso_threshold: Annotated[float, Field(gt=0, le=1)] = 0.65

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("rows", "market", "wallet") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("send exactly one of `rows`, `market` or `wallet`")
        return self


class _Handles:
    """Serve handles to the model deployments, looked up once (off the event loop) and kept."""

    def __init__(self) -> None:
        self._handles: dict[str, Any] = {}
        self._missing: dict[str, float] = {}

    async def get(self, app_name: str, deployment: str) -> Any:
        handle = self._handles.get(app_name)
        if handle is not None:
            return handle
        if time.monotonic() - self._missing.get(app_name, -math.inf) < MISS_RETRY_S:
            raise _not_deployed(app_name)
        from ray import serve
        try:
            handle = await asyncio.to_thread(serve.get_deployment_handle, deployment, app_name)
        except Exception:  # noqa: BLE001 - Serve raises several types for "no such application"
            self._missing[app_name] = time.monotonic()
            raise _not_deployed(app_name) from None
        self._handles[app_name] = handle
        return handle

    def forget(self, app_name: str) -> None:
        """Drop a handle whose deployment went away (deleted, failed): the next request looks it up again."""
        self._handles.pop(app_name, None)


def _not_deployed(app_name: str) -> ApiError:
    what = "model" if app_name == ML_APP else "policy"
    return ApiError(503, "model_unavailable", f"the {what} deployment is not running; `crypto-intel run` deploys it",
                    {"Retry-After": "5"})


async def _call(handles: _Handles, app_name: str, handle: Any, method: str, req: dict[str, Any]) -> dict[str, Any]:
    from ray.serve.exceptions import DeploymentUnavailableError
    try:
        response = getattr(handle, method).remote(req)
        out = await asyncio.wait_for(_await(response), CALL_TIMEOUT_S)
    except DeploymentUnavailableError:
        # a kept handle of an application deleted (or failed) since: answer as for one never deployed
        handles.forget(app_name)
        raise _not_deployed(app_name) from None
    except TimeoutError:
        response.cancel()
        raise ApiError(503, "model_unavailable", f"the model did not answer within {CALL_TIMEOUT_S:.0f}s",
                       {"Retry-After": "5"}) from None
    err = out.get("error")
    if err:
        headers = {"Retry-After": "5"} if err["status"] == 503 else None
        raise ApiError(err["status"], err["code"], err["message"], headers)
    return out


async def _await(response: Any) -> Any:
    return await response


async def _live_row(svc: Services, market: str, timeframe: str | None) -> tuple[str, dict[str, Any]]:
    tf = timeframe or svc.settings.default_timeframe
    row = await svc.cache.get("features", f"{market}|{tf}")
    if row is None:
        raise ApiError(404, "not_found", f"no live feature row for {market} {tf} yet (the live pipeline publishes "
                                         "one per closed bar)")
    if not isinstance(row.get("names"), list) or not isinstance(row.get("values"), list):
        raise ApiError(502, "bad_feature_row", f"the live feature row of {market} {tf} has no names/values")
    return tf, row


def _single(out: dict[str, Any], many: str, one: str) -> dict[str, Any]:
    if len(out[many]) == 1:
        out[one] = out[many][0]
    return out


def add_model_routes(app: FastAPI, services, principal) -> None:
    """Mount the model routes on ``app`` with its ``services`` and ``principal`` dependencies."""
    handles = _Handles()
    labels: dict[str, Any] = {}
    Svc = Annotated[Services, Depends(services)]

    @app.post("/ml/v1/predict", tags=["models"], operation_id="predict",
              response_model=PredictionItem, responses=errors(404, 502, 503))
    async def predict(body: PredictRequest, svc: Svc, who=Depends(principal)) -> JSONResponse:
        """Probability of "up" per row (``scores``; ``score`` for one row) and the model ``version`` that gave it."""
        handle = await handles.get(ML_APP, XGB_DEPLOYMENT)
        extra: dict[str, Any] = {}
        if body.market is not None:
            tf, row = await _live_row(svc, body.market, body.timeframe)
            req = {"names": row["names"], "values": row["values"]}
            extra = {"market": body.market, "timeframe": tf, "ts": row.get("ts")}
        else:
            req = {"rows": body.features}
        if body.version:
            req["version"] = body.version
        out = await _call(handles, ML_APP, handle, "predict", req)
        return JSONResponse({"item": clean(_single({**out, **extra}, "scores", "score"))})

    @app.post("/rl/v1/act", tags=["models"], operation_id="act", response_model=ActionItem,
              responses=errors(404, 502, 503))
    async def act(body: ActRequest, svc: Svc, who=Depends(principal)) -> JSONResponse:
        """Deterministic action per observation (``actions``; ``action`` for one) with its ``probabilities``."""
        handle = await handles.get(RL_APP, POLICY_DEPLOYMENT)
        extra: dict[str, Any] = {}
        if body.market is not None:
            tf, row = await _live_row(svc, body.market, body.timeframe)
            req = {"names": row["names"], "values": row["values"], "position": body.position}
            extra = {"market": body.market, "timeframe": tf, "ts": row.get("ts")}
        else:
            req = {"rows": body.observation}
        if body.version:
            req["version"] = body.version
        out = await _call(handles, RL_APP, handle, "act", req)
        out = _single({**out, **extra}, "actions", "action")
        if "action" in out:
            out["probs"] = out["probabilities"][0]
        return JSONResponse({"item": clean(out)})

    @app.post("/ml/v1/anomaly/detect", tags=["models"], operation_id="detect_anomalies",
              response_model=AnomalyScoresItem, responses=errors(404))
    async def anomaly(body: AnomalyRequest, svc: Svc, who=Depends(principal)) -> JSONResponse:
        """Robust z (max |z| over columns) and isolation-forest score per row, and the rows flagged."""
        from engine import anomaly as an
        item: dict[str, Any] = {"z_threshold": body.z_threshold, "iso_threshold": body.iso_threshold}
        if body.rows is not None:
            width = {len(r) for r in body.rows}
            if len(width) != 1:
                raise ApiError(422, "invalid_rows", f"rows must all have one width, got widths {sorted(width)[:5]}")
            X = np.array([[np.nan if v is None else v for v in r] for r in body.rows], dtype=np.float64)
            item.update(source="rows", columns=[f"c{i}" for i in range(X.shape[1])])
        elif body.market is not None:
            tf = body.timeframe or svc.settings.default_timeframe
            bars = list(reversed(await svc.queries.latest_candles(body.market, tf, limit=body.limit + 1)))
            if len(bars) < 3:
                raise ApiError(404, "not_found", f"fewer than 3 stored {tf} bars of {body.market}")
            col = {k: np.array([b[k] if b[k] is not None else np.nan for b in bars], dtype=np.float64)
                   for k in ("close", "high", "low", "volume")}
            X = an.market_rows(col["close"], col["high"], col["low"], col["volume"])
            item.update(source="market", market=body.market, timeframe=tf, columns=["log_return", "log_range",
                                                                                   "log_volume"],
                        ts=[b["open_ts"] for b in bars[1:]])
        else:
            rows = list(reversed(await svc.queries.transfers_by_wallet(body.chain, body.wallet, limit=body.limit)))
            if len(rows) < 2:
                raise ApiError(404, "not_found", f"fewer than 2 stored transfers of {body.wallet} on {body.chain}")
            me = body.wallet.lower() if body.wallet[:2].lower() == "0x" else body.wallet
            X = an.transfer_rows(np.array([r["block_ts"] / 1e9 for r in rows]), [r["value"] for r in rows],
                                 np.array([r["to_address"] == me for r in rows]))
            item.update(source="wallet", wallet=me, chain=body.chain, columns=["log10_amount", "direction",
                                                                               "log_gap_s"],
                        ts=[r["block_ts"] for r in rows], tx_hash=[r["tx_hash"] for r in rows])
        if len(X) < 2:
            raise ApiError(422, "invalid_rows", "anomaly scores need at least 2 rows")
        scores = await asyncio.to_thread(an.detect, X, body.z_threshold, body.iso_threshold)
        item.update(rows=len(X), robust_z=scores.robust_z.tolist(), isolation=scores.isolation.tolist(),
                    anomalous=scores.anomalous.tolist())
        return JSONResponse({"item": clean(item)})

    @app.get("/ml/v1/patterns/wallet/{address}", tags=["models"], operation_id="get_wallet_patterns",
             response_model=WalletPatternsItem, responses=errors(404))
    async def wallet_patterns(address: Annotated[str, Path(min_length=1, max_length=128), Text], svc: Svc,
                              who=Depends(principal),
                              chain: Annotated[str, Query(min_length=1, max_length=32), Text] = "ethereum",
                              limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
                              hops: Annotated[int, Query(ge=0, le=50, description="counterparties whose transfers "
                                                                                  "join the cluster replay")] = 20
                              ) -> JSONResponse:
        """Behaviour profile, cluster (common funder / co-spend over stored transfers) and labels of a wallet."""
        from engine.wallet_patterns import wallet_profile
        wallet = await svc.queries.wallet(chain, address)
        rows = await svc.queries.transfers_by_wallet(chain, address, limit=limit)
        if wallet is None and not rows:
            raise ApiError(404, "not_found", f"no wallet {address!r} on {chain}")
        me = address.lower() if address[:2].lower() == "0x" else address
        peers = Counter(t["from_address"] if t["to_address"] == me else t["to_address"] for t in rows)
        peers.pop(me, None)
        for peer, _ in sorted(peers.items(), key=lambda kv: (-kv[1], kv[0]))[:hops]:
            rows += await svc.queries.transfers_by_wallet(chain, peer, limit=200)
        if "set" not in labels:
            from engine.wallets.labels import LabelSet
            labels["set"] = await asyncio.to_thread(LabelSet.load)
        stored = [r["label"] for r in (wallet or {}).get("labels", [])]
        item = await asyncio.to_thread(wallet_profile, me, rows, stored, labels["set"])
        if wallet is not None:
            item.update(first_seen=wallet["first_seen"], last_seen=wallet["last_seen"],
                        balances=[{**b, "balance": str(b["balance"])} for b in wallet["balances"]])
        return JSONResponse({"item": clean({**item, "chain": chain})})

