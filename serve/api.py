"""The HTTP API (FastAPI), versioned under ``/api/v1``; served by Ray Serve (``serve.app``) or any ASGI server.

Hot data (latest candles, indicators, signals) comes from the Redis latest-state cache, history
from Postgres; no request ever waits on an engine actor. Every error body is
``{"error": {"code", "message"}}``. Keys come as ``Authorization: Bearer KEY`` or ``X-API-Key``.
"""


import asyncio
import base64
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool
from pydantic_core import PydanticCustomError

from schemas.errors import CryptoIntelError
from serve import openapi
from serve.api_models import (
    AlertPage,
    BacktestItem,
    BacktestPage,
    CandlePage,
    ErrorBody,
    Health,
    IndicatorValuesItem,
    IssuedKeyItem,
    ListedUserPage,
    MarketPage,
    MarketSummaryPage,
    RevokedItem,
    SignalItem,
    SignalPage,
    StructureItem,
    TransferPage,
    UserChangedItem,
    UserItem,
    WalletItem,
    WalletSummaryPage,
)
from serve.openapi import errors
from serve.structure_view import structure_view

log = logging.getLogger(__name__)

API = "/api/v1"
MAX_LIMIT = 1000
INT64 = (-(2**63), 2**63 - 1)


@dataclass
class ApiSettings:
    """Where the API reads from and who may call it from a browser."""

    database_url: str
    redis_url: str
    namespace: str = "ci"
    cors_origins: list[str] = field(default_factory=list)
    default_timeframe: str = "5m"
    hot_reads: bool = True  # hot reads from the replica's memory (serve.hot_cache)
    hot_settle_s: float = 1.0  # how long after a change Postgres may still lack its rows

    @classmethod
    def from_env(cls) -> "ApiSettings":
        db, rd = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
        if not db or not rd:
            raise RuntimeError("the HTTP API needs DATABASE_URL and REDIS_URL (users, keys and history live there)")
        origins = [o for o in os.environ.get("CRYPTO_INTEL_CORS_ORIGINS", "").split(",") if o]
        return cls(db, rd, os.environ.get("CRYPTO_INTEL_REDIS_NAMESPACE", "ci"), origins,
                   os.environ.get("CRYPTO_INTEL_DEFAULT_TIMEFRAME", "5m"),
                   os.environ.get("CRYPTO_INTEL_HOT_READS", "1") != "0",
                   float(os.environ.get("CRYPTO_INTEL_HOT_SETTLE_S", "1.0")))


class ApiError(CryptoIntelError):
    """An error with an HTTP status, a stable code and a message for the caller."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def text_problem(value: str) -> str | None:
    """Why Postgres would refuse ``value`` as text (a NUL, a lone surrogate), or None."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (lone surrogate)"
    return None


def _check_text(value: Any) -> Any:
    problem = text_problem(value) if isinstance(value, str) else None
    if problem:
        raise PydanticCustomError("invalid_text", "text {problem}", {"problem": problem})
    return value


# every text parameter and body field carries this: NUL and lone surrogates never reach Postgres
Text = AfterValidator(_check_text)


def _raw_text_problem(scope: dict) -> str | None:
    """What of the request's path or query string (still percent-encoded) is not text: NUL or invalid UTF-8."""
    raw_path = scope.get("raw_path")
    parts = [("path", unquote_to_bytes(raw_path) if raw_path is not None else None),
             ("query string", unquote_to_bytes(scope.get("query_string") or b""))]
    for where, raw in parts:
        if raw is None:  # no raw_path from this server: the decoded path is all there is
            problem = text_problem(scope.get("path", ""))
            if problem:
                return f"the {where} {problem}"
            continue
        if b"\x00" in raw:
            return f"the {where} contains a NUL character (%00)"
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return f"the {where} is not valid UTF-8 once percent-decoded"
    return None


async def _send_error(send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _Guard:
    """Inside CORS, around everything else: refuses paths and query strings Postgres could not take
    (422 ``invalid_text``), and turns any exception no handler took into a logged 500 in the one
    error shape (never the server's plain-text page)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = _raw_text_problem(scope)
        if problem:
            await _send_error(send, 422, "invalid_text", f"{problem}; send UTF-8 text without NUL characters")
            return
        started = False

        async def tracking_send(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)
        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            # the path only: query strings may carry a key (the dashboard's ?key=)
            log.exception("unhandled error answering %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _send_error(send, 500, "internal_error", "internal error; it has been logged")


def clean(value: Any) -> Any:
    """JSON-safe, recursively: NaN/inf as null (gap candles and warm-up values carry NaN), datetimes as ISO-8601."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def parse_time(value: str | None, name: str) -> int | None:
    """Nanoseconds from an int (ns, or s/ms/µs by magnitude) or an ISO-8601 time (UTC if no zone);
    422 ``invalid_time`` unless it is one and fits int64 nanoseconds."""
    if value is None or value == "":
        return None
    if re.fullmatch(r"[+-]?[0-9]{1,40}", value):
        n = int(value)
        for limit, scale in ((10**11, 10**9), (10**14, 10**6), (10**17, 10**3)):
            if abs(n) < limit:
                n *= scale
                break
    else:
        try:
            dt = datetime.fromisoformat(value)  # 3.11+: takes a trailing Z too
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            n = int(dt.timestamp()) * 10**9 + dt.microsecond * 1000
        except (ValueError, OverflowError):
            raise ApiError(422, "invalid_time", f"{name} must be epoch nanoseconds (or s/ms/µs) or an ISO-8601 "
                                                f"time, got {value[:64]!r}") from None
    if not INT64[0] <= n <= INT64[1]:
        raise ApiError(422, "invalid_time", f"{name} is outside the int64 nanosecond range: {value[:64]}")
    return n


def _cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode("|".join(str(p) for p in parts).encode()).decode().rstrip("=")


def _bad_cursor() -> ApiError:
    return ApiError(422, "invalid_cursor", "cursor is not one this API returned")


def _uncursor(cursor: str, n: int) -> list[str]:
    """The ``n`` text fields of a cursor; 422 ``invalid_cursor`` for anything this API did not make."""
    try:
        parts = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|", n - 1)
    except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII input
        raise _bad_cursor() from None
    if len(parts) != n or any(not p or text_problem(p) for p in parts):
        raise _bad_cursor()
    return parts


def _cursor_ns(part: str) -> int:
    """A cursor's time field: decimal int64 nanoseconds."""
    if not re.fullmatch(r"-?[0-9]{1,19}", part) or not INT64[0] <= int(part) <= INT64[1]:
        raise _bad_cursor()
    return int(part)


class Page(BaseModel):
    """A page of items; pass ``next_cursor`` back as ``cursor`` for the next one (null at the end)."""

    items: list[dict[str, Any]]
    next_cursor: str | None = None


def _page(items: list, next_cursor: str | None = None) -> JSONResponse:
    # already JSON-safe (see clean): skip re-validating every row against the response model
    return JSONResponse({"items": items, "next_cursor": next_cursor})


def _item(item: dict, status: int = 200) -> JSONResponse:
    return JSONResponse({"item": item}, status_code=status)


class Item(BaseModel):
    """One object."""

    item: dict[str, Any]


class NewUser(BaseModel):
    """A user to create; `tier` names a rate-limit tier (free, pro, enterprise)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"username": "alice", "email": "alice@example.com", "tier": "pro"}]})

    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    email: Annotated[str | None, Field(max_length=254), Text] = None
    tier: Annotated[str, Field(max_length=32), Text] = "free"


class NewKey(BaseModel):
    """A key to issue: its role (user or admin) and a label to recognise it by."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"role": "user", "label": "laptop"}]})

    role: Annotated[str, Field(max_length=32), Text] = "user"
    label: Annotated[str, Field(max_length=200), Text] = ""


class UserChange(BaseModel):
    """A new tier, and/or disabled true (disable) or false (enable); what is left out stays as it is."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tier": "pro"}, {"disabled": False}]})

    tier: Annotated[str | None, Field(max_length=32), Text] = None
    disabled: StrictBool | None = None  # true/false only, not "yes" or 1


class Services:
    """Connections shared by the requests of one replica, opened on first use."""

    # revocations are pushed to every replica over Redis (serve/auth_cache.py); this bounds a lost push
    AUTH_TTL_S = float(os.environ.get("CRYPTO_INTEL_AUTH_TTL_S") or 30.0)

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self._lock = asyncio.Lock()
        self.ready = False
        self._auth_cache = None

    @property
    def auth(self):
        """This replica's :class:`serve.auth_cache.AuthCache` (API keys, session tokens, pushed revocations)."""
        if self._auth_cache is None:
            from dataclasses import replace

            from connectors.storage.redis_keys import RedisKeys
            from serve.auth_cache import AuthCache
            from serve.sessions import SessionSettings
            self._auth_cache = AuthCache(self.accounts, self.settings.redis_url,
                                         RedisKeys(namespace=self.settings.namespace),
                                         replace(SessionSettings.from_env(), auth_ttl_s=self.AUTH_TTL_S))
        return self._auth_cache

    async def authenticate(self, key: str):
        """The principal of an API key or a session access token (a JWT), or None; cached, never by the key."""
        return await self.auth.authenticate(key)

    async def close(self) -> None:
        """Stop the hot-read watcher and close the connections (an in-process server's shutdown)."""
        if not self.ready:
            return
        self.ready = False
        if self.hot is not None:
            await self.watcher.stop()
        await self.queries.close()
        await self.accounts.close()
        await self.redis.aclose()

    async def open(self) -> "Services":
        if self.ready:
            return self
        async with self._lock:
            if self.ready:
                return self
            import redis.asyncio as aioredis

            from connectors.storage.latest_cache import LatestCache
            from connectors.storage.queries import Queries
            from connectors.storage.redis_keys import RedisKeys
            from serve.accounts import Accounts
            from serve.limits import KeyRateLimiter
            s = self.settings
            keys = RedisKeys(namespace=s.namespace)
            self.queries = await Queries.create(s.database_url)
            self.accounts = await Accounts.create(s.database_url)
            self.redis = aioredis.Redis.from_url(s.redis_url, socket_timeout=5, socket_connect_timeout=2)
            self.cache = LatestCache(self.redis, keys)
            self.limiter = KeyRateLimiter(self.redis, keys)
            self.hot = None
            if s.hot_reads:
                from serve.hot_cache import ResponseCache
                from serve.hot_feed import StreamWatcher
                self.hot = ResponseCache(settle_s=s.hot_settle_s)
                self.watcher = StreamWatcher(s.redis_url, keys, self.hot)
                self.watcher.start()
            self.ready = True
        return self


class _LazyCors:
    """CORS with the origins of the process that serves (a Serve replica reads its own environment)."""

    def __init__(self, app, origins) -> None:
        self.app, self.origins, self.inner = app, origins, None

    async def __call__(self, scope, receive, send) -> None:
        if self.inner is None:
            allowed = self.origins()
            self.inner = CORSMiddleware(self.app, allow_origins=allowed, allow_methods=["GET", "POST", "PATCH", "DELETE"],
                                        allow_headers=["Authorization", "X-API-Key", "Content-Type"]) if allowed else self.app
        await self.inner(scope, receive, send)


async def app_services(app) -> Services:
    """The replica's Services for ``app``, created and opened on first use."""
    if app.state.services is None:
        app.state.services = Services(app.state.settings or ApiSettings.from_env())
    return await app.state.services.open()


def _error_response(exc: Exception) -> JSONResponse | None:
    return _error(exc.status, exc.code, exc.message, exc.headers) if isinstance(exc, ApiError) else None


bearer = HTTPBearer(auto_error=False, description="API key or session access token as a bearer token")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The FastAPI application; ``settings`` default to the environment (DATABASE_URL, REDIS_URL)."""
    app = FastAPI(title="crypto-intel API", version="1.0.0", generate_unique_id_function=openapi.unique_id,
                  description="Signals, market data, structure, wallets, alerts and backtest runs of the crypto-intel "
                              "engine.",
                  responses={"4XX": {"model": ErrorBody, "description": "Client error: `{\"error\": {code, message}}`"}})
    app.state.settings = settings
    app.state.services = None
    from serve.hot_path import HotReads
    # innermost: inside the guard (text checks, 500s) and CORS, in front of the routes
    app.add_middleware(HotReads, services=lambda app_: app_services(app_),
                       authorize=lambda *a: app.state.authorize(*a), error=_error_response)
    app.add_middleware(_Guard)  # inside CORS, so its answers carry CORS headers too
    app.add_middleware(_LazyCors, origins=lambda: settings.cors_origins if settings else
                       [o for o in os.environ.get("CRYPTO_INTEL_CORS_ORIGINS", "").split(",") if o])

    async def services(request: Request) -> Services:
        return await app_services(request.app)

    async def principal(svc: Annotated[Services, Depends(services)],
                        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
                        header_key: Annotated[str | None, Depends(api_key_header)]):
        key = header_key or (creds.credentials if creds else None)
        if not key:
            raise ApiError(401, "unauthorized", "an API key or access token is required: Authorization: Bearer "
                           "KEY|TOKEN or X-API-Key", {"WWW-Authenticate": "Bearer"})
        who = await svc.authenticate(key)
        if who is None:
            from serve.jwt_tokens import looks_like_jwt
            what = ("invalid, expired or revoked access token; refresh it or log in again" if looks_like_jwt(key)
                    else "unknown, revoked or disabled API key")
            raise ApiError(401, "unauthorized", what, {"WWW-Authenticate": "Bearer"})
        decision = await svc.limiter.check(who)
        if not decision.allowed:
            retry = max(1, math.ceil(decision.retry_after_ms / 1000))
            raise ApiError(429, "rate_limited", f"rate limit of tier {who.tier.name} reached; retry in {retry}s",
                           {"Retry-After": str(retry)})
        return who

    async def authorize(svc: Services, authorization: str | None, x_api_key: str | None):
        # the route dependency's check for a request the hot-read path answers (headers as HTTPBearer reads them)
        scheme, _, credentials = (authorization or "").partition(" ")
        creds = HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials.strip()) \
            if scheme.lower() == "bearer" and credentials.strip() else None
        return await principal(svc, creds, x_api_key)
    app.state.authorize = authorize

    async def admin(who=Depends(principal)):
        if who.role != "admin":
            raise ApiError(403, "forbidden", "this endpoint needs the admin role")
        return who

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.headers)

    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException, unknown routes (404), 405
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed"}.get(exc.status_code, "error")
        return _error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        code = "invalid_text" if first.get("type") in ("invalid_text", "string_unicode") else "invalid_request"
        return _error(422, code, f"{where}: {first.get('msg', 'invalid value')}")

    from connectors.storage.queries import QueryError

    @app.exception_handler(QueryError)
    async def _query_error(request: Request, exc: QueryError) -> JSONResponse:
        return _error(422, "invalid_request", str(exc))

    import asyncpg

    @app.exception_handler(asyncpg.DataError)  # class 22 (bad text, out of range) and asyncpg's own encode errors
    async def _data_error(request: Request, exc: asyncpg.DataError) -> JSONResponse:
        log.warning("query refused a parameter on %s %s: %s", request.method, request.url.path, exc)
        return _error(422, "invalid_value", f"a parameter was refused by the database: {str(exc)[:200]}")

    Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size, at most {MAX_LIMIT}", examples=[100])]
    Symbol = Annotated[str, Path(min_length=1, max_length=64, description="market, e.g. BINANCE:BTCUSDT",
                                 examples=["BINANCE:BTCUSDT"]), Text]
    Tf = Annotated[str | None, Query(max_length=8, pattern=r"^[0-9]+[smhdw]$", description="timeframe, e.g. 1m",
                                     examples=["5m"])]
    Time = Annotated[str | None, Query(max_length=64, description="epoch ns (or s/ms/µs) or ISO-8601",
                                      examples=["2024-01-01T00:00:00Z"]), Text]
    Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page"), Text]
    Market = Annotated[str | None, Query(max_length=64), Text]
    Kind = Annotated[str | None, Query(max_length=64), Text]
    Address = Annotated[str | None, Query(max_length=128), Text]

    # -- public ----------------------------------------------------------------------------------

    @app.get("/healthz", response_model=Health, tags=["health"], operation_id="get_health")
    async def healthz() -> Health:
        """Liveness: the process answers. No key needed."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["health"], operation_id="get_readiness",
             responses={503: {"model": Health, "description": "Postgres or Redis does not answer"}})
    async def readyz(request: Request):
        """Readiness: Ray, Postgres and Redis answer. No key needed."""
        checks: dict[str, str] = {}
        try:
            import ray
            checks["ray"] = "ok" if ray.is_initialized() else "not connected"
        except ImportError:
            checks["ray"] = "not installed"
        try:
            svc = await services(request)
            await asyncio.wait_for(svc.queries.pool.fetchval("SELECT 1"), 2)
            checks["postgres"] = "ok"
            await asyncio.wait_for(svc.redis.ping(), 2)
            checks["redis"] = "ok"
        except Exception as e:  # noqa: BLE001 - readiness reports, never raises
            checks.setdefault("postgres", f"error: {type(e).__name__}")
            checks.setdefault("redis", f"error: {type(e).__name__}")
        ok = all(v == "ok" for k, v in checks.items() if k != "ray")
        body = Health(status="ok" if ok else "unavailable", checks=checks)
        return body if ok else JSONResponse(body.model_dump(), status_code=503)

    # -- markets -----------------------------------------------------------------------------------

    @app.get(f"{API}/markets", response_model=MarketPage, tags=["markets"], operation_id="list_markets")
    async def markets(svc: Annotated[Services, Depends(services)], who=Depends(principal)) -> Page:
        """Every market with candles, its timeframes and latest candle time."""
        latest = await svc.cache.all("candle")
        rows = await svc.queries.markets()
        by_market = {r["market"]: r for r in rows}
        for key, rec in latest.items():
            m = rec.get("market") or key.split("|")[0]
            by_market.setdefault(m, {"market": m, "timeframes": [], "last_open_ts": None})
            entry = by_market[m]
            entry["last_close"] = rec.get("close")
            entry["last_open_ts"] = max(entry["last_open_ts"] or 0, rec.get("open_ts") or 0)
            if rec.get("timeframe") and rec["timeframe"] not in entry["timeframes"]:
                entry["timeframes"] = sorted([*entry["timeframes"], rec["timeframe"]])
        return _page(items=clean([by_market[m] for m in sorted(by_market)]))

    @app.get(f"{API}/markets/{{symbol}}/candles", response_model=CandlePage, tags=["markets"],
             operation_id="list_candles")
    async def candles(symbol: Symbol, svc: Annotated[Services, Depends(services)], who=Depends(principal),
                      tf: Tf = None, start: Time = None, end: Time = None, limit: Limit = 500,
                      cursor: Cursor = None) -> Page:
        """Candles newest first, opened in [start, end); page on with ``cursor``."""
        tf = tf or svc.settings.default_timeframe
        start_ns, end_ns = parse_time(start, "start"), parse_time(end, "end")
        before = _cursor_ns(_uncursor(cursor, 1)[0]) if cursor else end_ns
        rows = await svc.queries.latest_candles(symbol, tf, limit=limit, before_ns=before)
        if start_ns is not None:
            rows = [r for r in rows if r["open_ts"] >= start_ns]
        nxt = _cursor(rows[-1]["open_ts"]) if len(rows) == limit else None
        return _page(items=clean(rows), next_cursor=nxt)

    @app.get(f"{API}/markets/{{symbol}}/indicators", response_model=IndicatorValuesItem, tags=["markets"],
             operation_id="get_indicators", responses=errors(404))
    async def indicators(symbol: Symbol, svc: Annotated[Services, Depends(services)], who=Depends(principal),
                         tf: Tf = None, names: Annotated[str | None, Query(
                             max_length=2000, description="comma-separated output names"), Text] = None) -> Item:
        """The latest indicator values of a market and timeframe (all, or ``names``)."""
        tf = tf or svc.settings.default_timeframe
        rec = await svc.cache.get("indicators", f"{symbol}|{tf}")
        if rec is None:
            raise ApiError(404, "not_found", f"no indicator values for {symbol} {tf} yet")
        values = rec.get("values", {})
        if names:
            wanted = [n.strip() for n in names.split(",") if n.strip()]
            unknown = [n for n in wanted if n not in values]
            if unknown:
                raise ApiError(422, "unknown_indicator", f"not computed for this market: {', '.join(unknown)}; "
                                                         f"available: {', '.join(sorted(values))}")
            values = {n: values[n] for n in wanted}
        return _item(item=clean({**rec, "values": values}))

    @app.get(f"{API}/markets/{{symbol}}/structure", response_model=StructureItem, tags=["markets"],
             operation_id="get_structure")
    async def structure(symbol: Symbol, svc: Annotated[Services, Depends(services)], who=Depends(principal),
                        tf: Tf = None) -> Item:
        """Latest swings and BOS/CHoCH, live order blocks, open fair value gaps and liquidity pools."""
        tf = tf or svc.settings.default_timeframe
        events = await svc.queries.structure_events(symbol, timeframe=tf, limit=5000)
        return _item(item=clean({"market": symbol, "timeframe": tf, **structure_view(events)}))

    @app.get(f"{API}/market/summary", response_model=MarketSummaryPage, tags=["markets"],
             operation_id="list_market_summaries")
    async def summary(svc: Annotated[Services, Depends(services)], who=Depends(principal), tf: Tf = None,
                      market: Market = None) -> Page:
        """Per market: price, 24h change, volume, volatility and risk, strongest signals."""
        tf = tf or svc.settings.default_timeframe
        return _page(items=clean(await svc.queries.market_summaries(tf, market)))

    # -- signals -----------------------------------------------------------------------------------

    @app.get(f"{API}/signals", response_model=SignalPage, tags=["signals"], operation_id="list_signals")
    async def signals(svc: Annotated[Services, Depends(services)], who=Depends(principal),
                      market: Market = None, kind: Kind = None, since: Time = None, limit: Limit = 100,
                      cursor: Cursor = None) -> Page:
        """Signals oldest first with reasons and risk; page on with ``cursor``."""
        after = None
        if cursor:
            ts, sid = _uncursor(cursor, 2)
            after = (_cursor_ns(ts), sid)
        rows = await svc.queries.signals(market=market, kind=kind, since_ns=parse_time(since, "since"),
                                         after=after, limit=limit)
        nxt = _cursor(rows[-1]["ts"], rows[-1]["id"]) if len(rows) == limit else None
        return _page(items=clean(rows), next_cursor=nxt)

    @app.get(f"{API}/signals/{{signal_id}}", response_model=SignalItem, tags=["signals"], operation_id="get_signal",
             responses=errors(404))
    async def signal(signal_id: Annotated[str, Path(max_length=128), Text], svc: Annotated[Services, Depends(services)],
                     who=Depends(principal)) -> Item:
        """One signal with its reasons, risk score and components."""
        row = await svc.queries.signal(signal_id)
        if row is None:
            raise ApiError(404, "not_found", f"no signal {signal_id!r}")
        return _item(item=clean(row))

    # -- backtests ---------------------------------------------------------------------------------

    from connectors.storage import backtests as backtest_store
    BacktestId = Annotated[str, Path(min_length=1, max_length=backtest_store.ID_MAX, pattern=backtest_store.ID_PATTERN,
                                     description="backtest run id"), Text]

    @app.get(f"{API}/backtests", response_model=BacktestPage, tags=["backtests"], operation_id="list_backtests")
    async def backtests(svc: Annotated[Services, Depends(services)], who=Depends(principal), limit: Limit = 50,
                        cursor: Cursor = None) -> BacktestPage:
        """Recorded backtest runs newest first, each with its portfolio metrics; page on with ``cursor``."""
        after = None
        if cursor:
            ts, rid = _uncursor(cursor, 2)
            after = (_cursor_ns(ts), rid)
        rows = await backtest_store.list_backtests(svc.queries.pool, limit=limit, after=after)
        nxt = _cursor(rows[-1]["created_at"], rows[-1]["id"]) if len(rows) == limit else None
        return _page(items=clean(rows), next_cursor=nxt)

    @app.get(f"{API}/backtests/{{backtest_id}}", response_model=BacktestItem, tags=["backtests"],
             operation_id="get_backtest", responses=errors(404))
    async def backtest(backtest_id: BacktestId, svc: Annotated[Services, Depends(services)],
                       who=Depends(principal)) -> BacktestItem:
        """One backtest run in full: parameters, settings, and portfolio, benchmark, per-market metrics and counters."""
        row = await backtest_store.get_backtest(svc.queries.pool, backtest_id)
        if row is None:
            raise ApiError(404, "not_found", f"no backtest {backtest_id!r}")
        return _item(item=clean(row))

    # -- on-chain ----------------------------------------------------------------------------------

    Chain = Annotated[str, Query(max_length=32, description="chain name"), Text]

    @app.get(f"{API}/wallets", response_model=WalletSummaryPage, tags=["on-chain"], operation_id="list_wallets")
    async def wallets(svc: Annotated[Services, Depends(services)], who=Depends(principal), chain: Chain = "ethereum",
                      limit: Limit = 100) -> Page:
        """Known wallets, most recently active first, with labels."""
        return _page(items=clean(await svc.queries.wallets(chain=chain, limit=limit)))

    @app.get(f"{API}/wallets/{{address}}", response_model=WalletItem, tags=["on-chain"], operation_id="get_wallet",
             responses=errors(404))
    async def wallet(address: Annotated[str, Path(max_length=128), Text], svc: Annotated[Services, Depends(services)],
                     who=Depends(principal), chain: Chain = "ethereum") -> Item:
        """A wallet's labels, first/last seen and balances (integers as decimal strings)."""
        row = await svc.queries.wallet(chain, address)
        if row is None:
            raise ApiError(404, "not_found", f"no wallet {address!r} on {chain}")
        row["balances"] = [{**b, "balance": str(b["balance"])} for b in row["balances"]]
        return _item(item=clean(row))

    @app.get(f"{API}/transactions", response_model=TransferPage, tags=["on-chain"], operation_id="list_transactions")
    async def transactions(svc: Annotated[Services, Depends(services)], who=Depends(principal),
                           wallet: Address = None, token: Address = None, since: Time = None,
                           chain: Chain = "ethereum", limit: Limit = 100) -> Page:
        """Token transfers newest first (amounts as exact decimal strings)."""
        rows = await svc.queries.transfers(chain=chain, wallet=wallet, token=token,
                                           since_ns=parse_time(since, "since"), limit=limit)
        return _page(items=clean([{**r, "value": str(r["value"])} for r in rows]))

    @app.get(f"{API}/alerts", response_model=AlertPage, tags=["on-chain"], operation_id="list_alerts")
    async def alerts(svc: Annotated[Services, Depends(services)], who=Depends(principal),
                     kind: Kind = None, since: Time = None, limit: Limit = 100) -> Page:
        """Alerts, oldest first (whale transfers and more)."""
        return _page(items=clean(await svc.queries.alerts(since_ns=parse_time(since, "since"), kind=kind, limit=limit)))

    # -- admin -------------------------------------------------------------------------------------

    @app.get(f"{API}/admin/users", response_model=ListedUserPage, tags=["admin"], operation_id="list_users",
             responses=errors(403))
    async def users(svc: Annotated[Services, Depends(services)], who=Depends(admin)) -> Page:
        """Every user with tier and active key count."""
        return _page(items=clean(await svc.accounts.list_users()))

    @app.post(f"{API}/admin/users", response_model=UserItem, status_code=201, tags=["admin"],
              operation_id="create_user", responses=errors(403, 409))
    async def create_user(body: NewUser, svc: Annotated[Services, Depends(services)], who=Depends(admin)) -> UserItem:
        """Create a user."""
        return _item(clean(await _accounts_call(svc.accounts.create_user(body.username, body.email, body.tier))), 201)

    @app.post(f"{API}/admin/users/{{username}}/keys", response_model=IssuedKeyItem, status_code=201, tags=["admin"],
              operation_id="issue_key", responses=errors(403, 404))
    async def issue_key(username: Annotated[str, Path(max_length=64), Text], body: NewKey,
                        svc: Annotated[Services, Depends(services)], who=Depends(admin)) -> IssuedKeyItem:
        """Issue a key; the response is the only time it is shown."""
        from serve.keys import key_id
        key = await _accounts_call(svc.accounts.issue_key(username, body.role, body.label))
        return _item({"username": username, "role": body.role, "key": key, "key_id": key_id(key)}, 201)

    @app.delete(f"{API}/admin/keys/{{key_id}}", response_model=RevokedItem, tags=["admin"], operation_id="revoke_key",
                responses=errors(403, 404))
    async def revoke_key(key_id: Annotated[str, Path(max_length=64), Text], svc: Annotated[Services, Depends(services)],
                         who=Depends(admin)) -> RevokedItem:
        """Revoke a key by its id (the first hex characters of its hash)."""
        revoked = await _accounts_call(svc.accounts.revoke_key(key_id))
        await svc.auth.publish("key", revoked)  # every replica drops the cached key at once
        return _item(item={"revoked": revoked})

    @app.patch(f"{API}/admin/users/{{username}}", response_model=UserChangedItem, tags=["admin"],
               operation_id="update_user", responses=errors(403, 404))
    async def change_user(username: Annotated[str, Path(max_length=64), Text], body: UserChange,
                          svc: Annotated[Services, Depends(services)], who=Depends(admin)) -> UserChangedItem:
        """Change a user's tier, or disable / enable them."""
        if body.tier is not None:
            await _accounts_call(svc.accounts.set_tier(username, body.tier))
        if body.disabled is True:
            await _accounts_call(svc.accounts.disable_user(username))
        elif body.disabled is False:
            await _accounts_call(svc.accounts.enable_user(username))
        if body.tier is not None or body.disabled is not None:
            await svc.auth.publish("user", username)  # every replica drops the user's cached principals
        return _item(item={"username": username, "tier": body.tier, "disabled": body.disabled})

    from serve.models_api import add_model_routes
    add_model_routes(app, services, principal)
    from serve.auth_api import add_auth_routes
    add_auth_routes(app, services, principal, admin)
    from serve.dashboard import add_dashboard
    add_dashboard(app)
    openapi.install(app)
    return app


async def _accounts_call(coro):
    from serve.accounts import AccountError, DuplicateUserError, UnknownKeyError, UnknownUserError
    from serve.tiers import UnknownRoleError, UnknownTierError
    try:
        return await coro
    except DuplicateUserError as e:
        raise ApiError(409, "conflict", str(e)) from None
    except (UnknownUserError, UnknownKeyError) as e:
        raise ApiError(404, "not_found", str(e)) from None
    except (UnknownTierError, UnknownRoleError, AccountError, ValueError) as e:
        raise ApiError(422, "invalid_request", str(e)) from None
