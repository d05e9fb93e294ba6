"""Which file column holds which field: common names, case-insensitive, or an explicit mapping."""

from __future__ import annotations

import re
from pathlib import Path

from schemas.errors import InputError

# field -> accepted column names, most specific first
TIMESTAMP = ("timestamp", "ts", "time", "datetime", "date", "open_time", "opentime", "ts_event", "trade_time")
TRADE_FIELDS: dict[str, tuple[str, ...]] = {
    "timestamp": TIMESTAMP,
    "market": ("symbol", "market", "pair", "instrument", "instrument_id", "ticker"),
    "price": ("price", "px", "trade_price"),
    "size": ("amount", "qty", "quantity", "size", "base_qty", "volume"),
    "side": ("side", "taker_side", "aggressor_side"),
    "buyer_maker": ("buyer_maker", "is_buyer_maker", "isbuyermaker", "buyer_is_maker"),
    "trade_id": ("trade_id", "id", "tradeid", "tid", "agg_trade_id"),
}
CANDLE_FIELDS: dict[str, tuple[str, ...]] = {
    "timestamp": TIMESTAMP,
    "market": TRADE_FIELDS["market"],
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v", "base_volume"),
    "trade_count": ("trade_count", "trades", "count", "number_of_trades", "num_trades"),
    "buy_volume": ("buy_volume", "taker_buy_volume", "taker_buy_base_volume", "taker_buy_base_asset_volume"),
    "sell_volume": ("sell_volume",),
    "quote_volume": ("quote_volume", "quote_asset_volume"),
    "vwap": ("vwap",),
}
TRADE_REQUIRED = ("timestamp", "price", "size")
CANDLE_REQUIRED = ("timestamp", "open", "high", "low", "close")

# Column names of files without a header, by field count.
BINANCE_KLINE = ("open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
                 "trade_count", "taker_buy_volume", "taker_buy_quote_volume", "ignore")
OHLCV = ("timestamp", "open", "high", "low", "close", "volume")
FREQTRADE_TRADES = ("timestamp", "id", "type", "side", "price", "amount", "cost")
HEADERLESS = {12: BINANCE_KLINE, 6: OHLCV, 7: FREQTRADE_TRADES}


def resolve(found: list[str], fields: dict[str, tuple[str, ...]], required: tuple[str, ...],
            overrides: dict[str, str] | None, what: str, source: str) -> dict[str, str]:
    """Map our field names to the file's column names; raise InputError naming what is missing."""
    by_lower = {}
    for name in found:
        by_lower.setdefault(name.strip().lower(), name)
    mapping: dict[str, str] = {}
    for field, column in (overrides or {}).items():
        if field not in fields:
            raise InputError(f"{source}: --columns names unknown field {field!r}; {what} fields are "
                             f"{sorted(fields)}")
        actual = column if column in found else by_lower.get(str(column).strip().lower())
        if actual is None:
            raise InputError(f"{source}: --columns maps {field!r} to {column!r}, which the file does not have; "
                             f"its columns are {found}")
        mapping[field] = actual
    for field, names in fields.items():
        if field not in mapping:
            hit = next((by_lower[n] for n in names if n in by_lower), None)
            if hit is not None and hit not in mapping.values():
                mapping[field] = hit
    missing = [f for f in required if f not in mapping]
    if missing:
        hints = "; ".join(f"{f}: one of {list(fields[f])}" for f in missing)
        example = ",".join(f"{f}=<column>" for f in missing)
        raise InputError(f"{source}: cannot read {what}: no column for {missing}. Found columns {found}. "
                         f"Looked for {hints}. Name them with --columns {example}.")
    return mapping


def looks_like(found: list[str], overrides: dict[str, str] | None = None) -> str | None:
    """``candles`` when open/high/low/close are present, ``trades`` when price and size are, else None."""
    names = {n.strip().lower() for n in found} | set(overrides or {})
    keys = set(overrides or {})

    def has(field: str, fields: dict) -> bool:
        return field in keys or any(n in names for n in fields[field])

    if all(has(f, CANDLE_FIELDS) for f in ("open", "high", "low", "close")):
        return "candles"
    if has("price", TRADE_FIELDS) and has("size", TRADE_FIELDS):
        return "trades"
    return None


def market_from_path(path: Path) -> str:
    """Market name from a file name: ``XRP_ETH-trades.parquet`` -> ``XRP_ETH``, ``btcusdt-...`` -> ``BTCUSDT``."""
    name = path.name
    for suffix in (".gz", ".bz2", ".zst"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    stem = name.rsplit(".", 1)[0]
    head = re.split(r"[-\s]", stem, maxsplit=1)[0] or stem
    return head.upper()


def parse_column_map(text: str | None) -> dict[str, str] | None:
    """``"timestamp=time,price=px"`` -> {"timestamp": "time", "price": "px"} (the --columns option)."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        field, sep, column = part.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise InputError(f"--columns {text!r}: write FIELD=COLUMN pairs separated by commas, "
                             "e.g. timestamp=time,price=px,size=qty")
        out[field.strip()] = column.strip()
    return out
