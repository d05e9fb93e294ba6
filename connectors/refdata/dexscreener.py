"""DexScreener pools: pairs by address, a token's pairs and search, as :class:`DexPair` records."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import ValidationError

from connectors.refdata import rows
from connectors.refdata.http import ClientConfig, RefDataClient, SourceApi, per_minute
from connectors.refdata.rows import Reject, RowError
from schemas.errors import ConfigError
from schemas.records import DexPair

SOURCE = "dexscreener"
DEFAULT_BASE_URL = "https://api.dexscreener.com"
MAX_PAIRS_PER_CALL = 30  # the documented limit of /latest/dex/pairs


def dexscreener_config(*, base_url: str | None = None, **overrides: Any) -> ClientConfig:
    """Client settings for DexScreener's public API (300 calls/min on the pair, token and search routes)."""
    settings: dict[str, Any] = {"name": SOURCE, "base_url": base_url or DEFAULT_BASE_URL,
                                "min_interval_s": per_minute(300), "cache_ttl_s": 15.0}
    settings.update(overrides)
    return ClientConfig(**settings)


def address_key(address: str) -> str:
    """Lookup key of an address: EVM hex is case-insensitive, base58 (Solana) is not."""
    return address.lower() if address[:2] in ("0x", "0X") else address


def parse_pair(row: Any, fetched_ns: int) -> DexPair:
    """One DexScreener pair object as a record; raises :class:`RowError` when it cannot be used."""
    if not isinstance(row, dict):
        raise RowError("not_object:row", repr(row)[:80])
    base = rows.obj(row, "baseToken")
    quote_token = rows.obj(row, "quoteToken")
    liquidity = rows.obj(row, "liquidity", required=False) or {}  # absent for pools DexScreener cannot value
    volume = rows.obj(row, "volume", required=False) or {}
    try:
        return DexPair(
            source=SOURCE, chain=rows.text(row, "chainId"), pair_address=rows.text(row, "pairAddress"),
            dex=rows.text(row, "dexId"), base_symbol=rows.text(base, "symbol"),
            base_address=rows.text(base, "address"), quote_symbol=rows.text(quote_token, "symbol"),
            quote_address=rows.text(quote_token, "address"), ts=fetched_ns,
            price_usd=rows.number(row, "priceUsd"), price_native=rows.number(row, "priceNative"),
            liquidity_usd=rows.number(liquidity, "usd"), volume_24h_usd=rows.number(volume, "h24"))
    except ValidationError as e:
        raise RowError("invalid", str(e.errors()[0]["msg"])) from None


def parse_pairs(items: Iterable[Any], fetched_ns: int, reject: Reject) -> list[DexPair]:
    """Records of a list of pair objects; bad rows go to ``reject`` and the rest are kept."""
    out = []
    for row in items:
        try:
            out.append(parse_pair(row, fetched_ns))
        except RowError as e:
            where = row.get("pairAddress", "?") if isinstance(row, dict) else "?"
            reject(e.reason, f"{where}: {e}")
    return out


class DexScreener(SourceApi):
    """DexScreener pools (price, liquidity, 24 h volume) by chain id (``ethereum``, ``solana``, ``bsc``...)."""

    def __init__(self, config: ClientConfig | None = None, session: aiohttp.ClientSession | None = None, *,
                 client: RefDataClient | None = None) -> None:
        self.client = client or RefDataClient(config or dexscreener_config(), session)


    async def pairs(self, chain: str, addresses: Sequence[str]) -> list[DexPair]:
        """Pools ``addresses`` on ``chain`` from ``/latest/dex/pairs``, 30 per call; unknown ones are left out."""
        chain = _segment("chain", chain)
        unique = sorted({a.strip() for a in addresses if a and a.strip()})  # sorted: stable cache keys
        out: list[DexPair] = []
        for i in range(0, len(unique), MAX_PAIRS_PER_CALL):
            batch = unique[i:i + MAX_PAIRS_PER_CALL]
            path = f"/latest/dex/pairs/{chain}/{','.join(quote(a, safe='') for a in batch)}"
            got = self._from_pairs_body(await self.client.get_json(path), path)
            returned = {address_key(p.pair_address) for p in got}
            self.client.not_found(sum(address_key(a) not in returned for a in batch), f"on {chain}")
            out.extend(got)
        return out

    async def token_pairs(self, chain: str, token_address: str) -> list[DexPair]:
        """Every pool of one token on ``chain`` from ``/token-pairs/v1`` (a JSON list of pairs)."""
        path = f"/token-pairs/v1/{_segment('chain', chain)}/{_segment('token_address', token_address)}"
        body = await self.client.get_json(path)
        if not isinstance(body, list):
            raise self.client.bad_shape(f"{path} should answer a JSON list of pairs", body)
        return parse_pairs(body, self.client.now_ns(), self.client.reject)

    async def search(self, q: str) -> list[DexPair]:
        """Pools matching a free-text query (symbol, name or address) from ``/latest/dex/search``."""
        if not q.strip():
            raise ConfigError("dexscreener: search needs a non-empty query")
        return self._from_pairs_body(await self.client.get_json("/latest/dex/search", {"q": q.strip()}),
                                     "/latest/dex/search")

    def _from_pairs_body(self, body: Any, path: str) -> list[DexPair]:
        # documented shape {"schemaVersion": "...", "pairs": [...]}; "pairs" is null when nothing matched,
        # and older answers of the pair route carried a single "pair" object
        if not isinstance(body, dict):
            raise self.client.bad_shape(f"{path} should answer a JSON object", body)
        items = body.get("pairs")
        if items is None:
            items = [body["pair"]] if isinstance(body.get("pair"), dict) else []
        if not isinstance(items, list):
            raise self.client.bad_shape(f"{path}: 'pairs' should be a list", items)
        return parse_pairs(items, self.client.now_ns(), self.client.reject)


def _segment(what: str, value: str) -> str:
    """A URL path segment from a caller's value, escaped so it cannot change the route."""
    value = value.strip()
    if not value:
        raise ConfigError(f"dexscreener: {what} must not be empty")
    return quote(value, safe="")
