"""The response bodies of the HTTP API as pydantic models: what ``/openapi.json`` publishes and client
generators build their types from.

Handlers answer with ``JSONResponse`` directly (rows are already JSON-safe), so these models document
the answers rather than build them; the schema test checks that every answer conforms. Records that
``schemas.records`` defines (candles, signals, indicator snapshots, structure events) are not written a
second time: :func:`json_form` derives their wire form from the record, with every float nullable
because NaN (gap candles, warm-up values) travels as ``null``.
"""

from __future__ import annotations

import types
from copy import copy
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic_core import PydanticUndefined

from schemas import records

NS = "ns UTC"


def _nullable_floats(annotation: Any) -> Any:
    """``annotation`` with every ``float`` in it (inside lists, dicts and unions too) made ``float | None``."""
    if annotation is float:
        return float | None
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list:
        return list[_nullable_floats(args[0])]
    if origin is dict:
        return dict[args[0], _nullable_floats(args[1])]
    if origin in (Union, types.UnionType):
        return Union[tuple(_nullable_floats(a) for a in args)]  # noqa: UP007 - built from a tuple
    return annotation


def json_form(record: type[BaseModel], name: str | None = None, example: dict[str, Any] | None = None
              ) -> type[BaseModel]:
    """The wire form of a ``schemas.records`` record: the same fields, descriptions and constraints, every
    field required (the API always sends each one) and every float nullable (NaN is sent as null)."""
    fields: dict[str, Any] = {}
    for field_name, info in record.model_fields.items():
        info = copy(info)
        info.default, info.default_factory = PydanticUndefined, None  # required
        fields[field_name] = (_nullable_floats(info.annotation), info)
    config = ConfigDict(json_schema_extra={"examples": [example]} if example else None)
    doc = (record.__doc__ or "").strip().splitlines()[0] + " Floats that are NaN are sent as null."
    return create_model(name or record.__name__, __config__=config, __doc__=doc, __module__=__name__, **fields)


def page_of(model: type[BaseModel], what: str) -> type[BaseModel]:
    """``{"items": [model], "next_cursor"}``, named ``<Model>Page``."""
    return create_model(f"{model.__name__}Page", __module__=__name__,
                        __doc__=f"A page of {what}; pass `next_cursor` back as `cursor` for the next page "
                                "(null at the end, and always null where the route takes no cursor).",
                        items=(list[model], ...),
                        next_cursor=(str | None, Field(..., examples=[None])))


def item_of(model: type[BaseModel]) -> type[BaseModel]:
    """``{"item": model}``, named ``<Model>Item``."""
    return create_model(f"{model.__name__}Item", __module__=__name__, __doc__=f"One {model.__name__}.",
                        item=(model, ...))


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


# -- errors and health ---------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    """A stable machine-readable ``code`` and a message for people."""

    code: str = Field(examples=["not_found"], description="e.g. unauthorized, forbidden, not_found, conflict, "
                                                           "invalid_request, invalid_text, rate_limited")
    message: str = Field(examples=["no signal 'abc'"])


class ErrorBody(BaseModel):
    """The one shape of every error answer."""

    model_config = _examples({"error": {"code": "not_found", "message": "no signal 'abc'"}})
    error: ErrorDetail


class Health(BaseModel):
    """Liveness or readiness, with one check per dependency (readiness only)."""

    model_config = _examples({"status": "ok", "checks": {"ray": "ok", "postgres": "ok", "redis": "ok"}})
    status: str = Field(description="ok or unavailable")
    checks: dict[str, str] = Field(default_factory=dict)


# -- market data ---------------------------------------------------------------------------------------

_T0 = 1_700_000_000_000_000_000

Candle = json_form(records.Candle, example={
    "market": "BINANCE:BTCUSDT", "timeframe": "5m", "open_ts": _T0, "close_ts": _T0 + 300 * 10**9,
    "open": 37250.1, "high": 37290.0, "low": 37231.5, "close": 37280.4, "volume": 12.5, "buy_volume": 7.1,
    "sell_volume": 5.4, "vwap": 37262.9, "trade_count": 812, "gap": False, "degraded": False})

IndicatorValues = json_form(records.IndicatorSnapshot, "IndicatorValues", example={
    "market": "BINANCE:BTCUSDT", "timeframe": "5m", "ts": _T0, "close": 37280.4,
    "values": {"rsi_14": 61.2, "ema_20": 37190.7, "macd_12_26_9": 42.1, "atr_14": None}})

StructureEvent = json_form(records.StructureEvent, example={
    "id": "BINANCE:BTCUSDT|5m|swing_high|1700000000000000000", "market": "BINANCE:BTCUSDT", "timeframe": "5m",
    "kind": "swing_high", "ts": _T0, "confirmed_ts": _T0 + 900 * 10**9, "price": 37290.0, "meta": {}})


class StructureObject(StructureEvent):  # type: ignore[misc, valid-type]
    """An order block, fair value gap or liquidity pool still live: its creating event, family, state and the
    lifecycle steps seen so far."""

    family: str = Field(description="ob, fvg or liquidity", examples=["ob"])
    state: str = Field(description="the latest step, e.g. created, touched, breaker", examples=["created"])
    steps: list[str] = Field(examples=[["created", "touched"]])


class Structure(BaseModel):
    """A market's live structure picture: latest swings and BOS/CHoCH, and the objects still standing."""

    market: str = Field(examples=["BINANCE:BTCUSDT"])
    timeframe: str = Field(examples=["5m"])
    swings: list[StructureEvent] = Field(description="the latest swing highs and lows, oldest first")
    breaks: list[StructureEvent] = Field(description="the latest breaks of structure and changes of character")
    order_blocks: list[StructureObject]
    fair_value_gaps: list[StructureObject]
    liquidity: list[StructureObject]


class Market(BaseModel):
    """A market with candles: its timeframes, latest candle time and (from the live cache) last close."""

    model_config = _examples({"market": "BINANCE:BTCUSDT", "timeframes": ["1m", "5m"], "last_open_ts": _T0,
                              "last_close": 37280.4})
    market: str
    timeframes: list[str]
    last_open_ts: int | None = Field(description=f"open time of the latest candle, {NS}")
    last_close: float | None = Field(None, description="close of the latest live candle, when the cache has one")


Signal = json_form(records.Signal, example={
    "id": "sig-3f2a9c", "market": "BINANCE:BTCUSDT", "timeframe": "5m", "ts": _T0, "kind": "bos_retest",
    "side": "buy", "strength": 0.72, "price": 37280.4, "stop": 37120.0, "target": 37600.0,
    "targets": [37600.0, 37900.0], "reasons": ["bos_bull", "rsi_14 > 55"], "source_versions": {"signals": "1"},
    "risk_score": 38.5, "risk": {"volatility": 0.012}, "flags": []})


class RiskScore(BaseModel):
    """The risk score of a market's latest scored bar (0..100) with its components."""

    ts: int = Field(description=f"bar time, {NS}")
    score: float | None
    components: dict[str, float | None]


class MarketSummary(BaseModel):
    """Price, 24h change and range, volume, risk and the strongest signals of the 24h before the latest candle."""

    model_config = _examples({"market": "BINANCE:BTCUSDT", "timeframe": "5m", "ts": _T0, "price": 37280.4,
                              "change_24h": 0.0213, "volume_24h": 4120.7, "high_24h": 37511.0, "low_24h": 36302.2,
                              "risk": {"ts": _T0, "score": 38.5, "components": {"volatility": 0.012}},
                              "top_signals": []})
    market: str
    timeframe: str
    ts: int = Field(description=f"open time of the latest candle, {NS}")
    price: float | None = Field(description="close of the latest candle with trades")
    change_24h: float | None = Field(description="fractional change over the 24h, e.g. 0.02 = +2%")
    volume_24h: float | None
    high_24h: float | None
    low_24h: float | None
    risk: RiskScore | None
    top_signals: list[Signal] = Field(description="up to 5, strongest first")  # type: ignore[valid-type]


# -- on-chain ------------------------------------------------------------------------------------------

class WalletSummary(BaseModel):
    """A known wallet in a list: first and last activity and its label names."""

    model_config = _examples({"chain": "ethereum", "address": "0x28c6c06298d514db089934071355e5743bf21d60",
                              "first_seen": _T0, "last_seen": _T0 + 3600 * 10**9, "labels": ["exchange:binance"]})
    chain: str
    address: str
    first_seen: int | None = Field(description=NS)
    last_seen: int | None = Field(description=NS)
    labels: list[str]


class WalletLabel(BaseModel):
    """A label on a wallet and where it came from."""

    label: str
    source: str
    created_at: int = Field(description=NS)


class Balance(BaseModel):
    """A wallet's latest known balance of one token."""

    token_address: str = Field(description="empty for the chain's native coin")
    block_number: int
    balance: str = Field(pattern=r"^-?[0-9]+$", description="exact integer in the token's base units",
                         examples=["1500000000000000000"])


class Wallet(BaseModel):
    """What is known of a wallet: first/last seen, labels and the latest balance per token."""

    model_config = _examples({"chain": "ethereum", "address": "0x28c6c06298d514db089934071355e5743bf21d60",
                              "first_seen": _T0, "last_seen": _T0 + 3600 * 10**9,
                              "labels": [{"label": "exchange:binance", "source": "user", "created_at": _T0}],
                              "balances": [{"token_address": "", "block_number": 18_500_000,
                                            "balance": "1500000000000000000"}]})
    chain: str
    address: str
    first_seen: int | None = Field(description=NS)
    last_seen: int | None = Field(description=NS)
    labels: list[WalletLabel]
    balances: list[Balance]


class Transfer(BaseModel):
    """A stored token transfer (a row of ``token_transfers``): the log that moved it and the exact amount."""

    model_config = _examples({"chain": "ethereum", "block_hash": "0x9b1f...", "log_index": 12,
                              "block_number": 18_500_000, "block_ts": _T0, "tx_hash": "0x5e3c...",
                              "token_address": "0xdac17f958d2ee523a2206206994597c13d831ec7",
                              "from_address": "0x28c6c06298d514db089934071355e5743bf21d60",
                              "to_address": "0x3f5ce5fbfe3e9af3971dd833d26ba9b5c936f0be", "value": "250000000"})
    chain: str
    block_hash: str
    log_index: int
    block_number: int
    block_ts: int = Field(description=f"block time, {NS}")
    tx_hash: str
    token_address: str = Field(description="empty for the chain's native coin")
    from_address: str
    to_address: str
    value: str = Field(pattern=r"^[0-9]+$", description="exact uint256 amount in the token's base units")


class Alert(BaseModel):
    """A stored alert (whale transfer, exchange flow, ...); ``payload`` holds the rest of the chain alert."""

    model_config = _examples({"id": "whale:ethereum:0x5e3c...:12", "ts": _T0, "kind": "whale_transfer",
                              "severity": "warning", "chain": "ethereum", "market": None,
                              "address": "0x28c6c06298d514db089934071355e5743bf21d60",
                              "message": "250,000 USDT moved", "payload": {"usd": 250000.0}})
    id: str
    ts: int = Field(description=NS)
    kind: str
    severity: str
    chain: str | None
    market: str | None
    address: str | None
    message: str
    payload: dict[str, Any]


# -- accounts ------------------------------------------------------------------------------------------

class User(BaseModel):
    """A user: name, tier and state."""

    model_config = _examples({"username": "alice", "email": "alice@example.com", "tier": "pro",
                              "created_at": "2024-01-01T00:00:00+00:00", "disabled": False})
    username: str
    email: str | None = None
    tier: str
    created_at: str | None = Field(None, description="ISO-8601")
    disabled: bool


class ListedUser(User):
    """A user in the admin list, with the number of keys not revoked."""

    active_keys: int


class UserItem(BaseModel):
    item: User


class IssuedKey(BaseModel):
    """A new key: shown in this answer only (the API stores its hash)."""

    model_config = _examples({"username": "alice", "role": "user", "key": "ci_5PzN...", "key_id": "3f2a9c1b"})
    username: str
    role: str
    key: str
    key_id: str = Field(description="the first hex characters of the key's hash: what revoke takes")


class IssuedKeyItem(BaseModel):
    item: IssuedKey


class Revoked(BaseModel):
    revoked: str = Field(description="the key id revoked")


class RevokedItem(BaseModel):
    item: Revoked


class UserChanged(BaseModel):
    """What a PATCH changed (null: left as it was)."""

    username: str
    tier: str | None = None
    disabled: bool | None = None


class UserChangedItem(BaseModel):
    item: UserChanged


# -- backtests -----------------------------------------------------------------------------------------

class BacktestSummary(BaseModel):
    """A backtest run in a list: what ran, over what, and its portfolio metrics."""

    id: str
    created_at: int = Field(description="when the run was recorded, ns UTC")
    strategy: str
    strategy_version: str | None = None
    params: dict[str, Any]
    timeframe: str | None = None
    engine: str | None = None
    markets: list[str]
    start_ts: int | None = Field(None, description="first bar, ns UTC")
    end_ts: int | None = Field(None, description="last bar, ns UTC")
    bars: int | None = None
    trades: int | None = None
    summary: dict[str, Any] = Field(description="the portfolio metrics")


class BacktestPage(BaseModel):
    """A page of backtest runs, newest first; pass ``next_cursor`` back as ``cursor`` (null at the end)."""

    items: list[BacktestSummary]
    next_cursor: str | None = None


class Backtest(BaseModel):
    """A backtest run in full: its settings and every metric."""

    id: str
    created_at: int = Field(description="when the run was recorded, ns UTC")
    strategy: str
    strategy_version: str | None = None
    params: dict[str, Any]
    settings: dict[str, Any]
    timeframe: str | None = None
    engine: str | None = None
    markets: list[str]
    start_ts: int | None = Field(None, description="first bar, ns UTC")
    end_ts: int | None = Field(None, description="last bar, ns UTC")
    bars: int | None = None
    trades: int | None = None
    metrics: dict[str, Any] = Field(description="portfolio, benchmark, markets (per market) and counters")
    out_dir: str | None = None


class BacktestItem(BaseModel):
    item: Backtest


# -- models --------------------------------------------------------------------------------------------

class Prediction(BaseModel):
    """Probability of "up" per row from the model ``version`` that gave it; ``score`` when there is one row;
    ``market``, ``timeframe`` and ``ts`` when a market's live feature row was scored."""

    model_config = _examples({"model": "xgb", "version": "v3", "scores": [0.61], "score": 0.61,
                              "market": "BINANCE:BTCUSDT", "timeframe": "5m", "ts": _T0})
    model: str
    version: str
    scores: list[float | None]
    score: float | None = None
    market: str | None = None
    timeframe: str | None = None
    ts: int | None = Field(None, description=f"close time of the scored bar, {NS}")


class Action(BaseModel):
    """Deterministic action per observation with its probabilities; ``action``/``probs`` when there is one."""

    model_config = _examples({"model": "policy", "version": "v1", "actions": [1], "probabilities": [[0.2, 0.7, 0.1]],
                              "action": 1, "probs": [0.2, 0.7, 0.1]})
    model: str
    version: str
    actions: list[int]
    probabilities: list[list[float | None]]
    action: int | None = None
    probs: list[float | None] | None = None
    market: str | None = None
    timeframe: str | None = None
    ts: int | None = Field(None, description=f"close time of the bar acted on, {NS}")


class AnomalyScores(BaseModel):
    """Robust z (max |z| over columns) and isolation score per row and which rows are flagged; the source's
    keys (``market``/``timeframe`` or ``wallet``/``chain``, ``ts``, ``tx_hash``) as it applies."""

    model_config = _examples({"source": "rows", "columns": ["c0", "c1"], "rows": 3, "z_threshold": 3.5,
                              "iso_threshold": 0.65, "robust_z": [0.3, 0.5, 6.1], "isolation": [0.41, 0.44, 0.72],
                              "anomalous": [2]})
    source: str = Field(description="rows, market or wallet")
    columns: list[str]
    rows: int
    z_threshold: float
    iso_threshold: float
    robust_z: list[float | None]
    isolation: list[float | None]
    anomalous: list[int] = Field(description="indices of the rows flagged (robust z or isolation at or above its "
                                             "threshold)")
    market: str | None = None
    timeframe: str | None = None
    wallet: str | None = None
    chain: str | None = None
    ts: list[int] | None = Field(None, description=f"bar open or transfer block times, {NS}")
    tx_hash: list[str] | None = None


class Counterparty(BaseModel):
    address: str
    transfers: int


class TokenFlow(BaseModel):
    """A wallet's flow in one token, exact integers as decimal strings."""

    in_: str = Field(alias="in")
    out: str
    net: str
    transfers: int


class WalletProfile(BaseModel):
    """Counts, timing and per-token flows of a wallet's stored transfers."""

    transfers: int
    incoming: int
    outgoing: int
    counterparties: int
    tokens: int
    first_ts: int | None = Field(description=NS)
    last_ts: int | None = Field(description=NS)
    active_days: int
    median_gap_s: float | None
    burstiness: float | None
    in_share: float | None
    top_counterparties: list[Counterparty]
    per_token: dict[str, TokenFlow]


class WalletCluster(BaseModel):
    """The cluster a wallet belongs to (common funder / co-spend); its id is its smallest address."""

    id: str
    size: int
    members: list[str] = Field(description="the first 50 members")
    funder: str | None


class WalletPatterns(BaseModel):
    """Behaviour profile, cluster and labels of a wallet, with the rules behind its behaviour labels."""

    address: str
    chain: str
    profile: WalletProfile
    cluster: WalletCluster
    labels: list[str]
    behaviour: list[str]
    rules: dict[str, str] = Field(description="behaviour label -> the rule that gives it")
    first_seen: int | None = Field(None, description=NS)
    last_seen: int | None = Field(None, description=NS)
    balances: list[Balance] | None = None


# -- envelopes -----------------------------------------------------------------------------------------

MarketPage = page_of(Market, "markets")
CandlePage = page_of(Candle, "candles, newest first")
IndicatorValuesItem = item_of(IndicatorValues)
StructureItem = item_of(Structure)
MarketSummaryPage = page_of(MarketSummary, "market summaries")
SignalPage = page_of(Signal, "signals, oldest first")
SignalItem = item_of(Signal)
WalletSummaryPage = page_of(WalletSummary, "wallets, most recently active first")
WalletItem = item_of(Wallet)
TransferPage = page_of(Transfer, "token transfers, newest first")
AlertPage = page_of(Alert, "alerts, oldest first")
ListedUserPage = page_of(ListedUser, "users")
PredictionItem = item_of(Prediction)
ActionItem = item_of(Action)
AnomalyScoresItem = item_of(AnomalyScores)
WalletPatternsItem = item_of(WalletPatterns)
