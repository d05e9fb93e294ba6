"""Market keys: ``VENUE:SYMBOL`` with the venue's separators removed and XBT spelled BTC.

``BINANCE:BTCUSDT``, ``COINBASE:BTCUSD`` (from ``BTC-USD``), ``KRAKEN:BTCUSD`` (from ``XBT/USD``),
``OKX:BTCUSDT`` (from ``BTC-USDT``); derivative suffixes stay after a dash: ``OKX:UNIUSD-SWAP``,
``OKX:BTCUSD-220527``. The venue's own symbol is kept by each parser for subscriptions and REST.
"""

from __future__ import annotations

from functools import lru_cache

_ALIASES = {"XBT": "BTC", "XDG": "DOGE"}


@lru_cache(maxsize=65536)
def market_key(venue: str, symbol: str) -> str:
    """Normalised market key of a venue symbol (cached: parsers call this per trade)."""
    s = symbol.upper().replace("/", "-").replace("_", "-")
    parts = s.split("-")
    base_quote = [_ALIASES.get(p, p) for p in parts[:2]]
    rest = parts[2:]
    if len(parts) == 1:
        base_quote = [_ALIASES.get(parts[0][:3], parts[0][:3]) + parts[0][3:]] if parts[0].startswith("XBT") else parts
    key = "".join(base_quote)
    if rest:
        key += "-" + "-".join(rest)
    return f"{venue}:{key}"
