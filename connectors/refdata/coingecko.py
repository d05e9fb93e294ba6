"""CoinGecko reference prices: ``/simple/price`` and ``/coins/markets`` as :class:`ReferencePrice` records."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import aiohttp
from pydantic import ValidationError

from connectors.refdata import rows
from connectors.refdata.http import ClientConfig, RefDataClient, SourceApi, per_minute
from connectors.refdata.rows import Reject, RowError
from schemas.errors import ConfigError
from schemas.records import ReferencePrice

SOURCE = "coingecko"
DEFAULT_BASE_URL = "https://api.coingecko.com/api/v3"
PRO_BASE_URL = "https://pro-api.coingecko.com/api/v3"
MAX_IDS_PER_CALL = 250  # /coins/markets pages hold at most 250; /simple/price URLs stay short enough too
_HEADERS = {"demo": "x-cg-demo-api-key", "pro": "x-cg-pro-api-key"}
_RATES = {"demo": 30, "pro": 500}  # calls per minute of the public/demo and the smallest paid plan


def coingecko_config(*, base_url: str | None = None, api_key: str | None = None,
                     plan: Literal["demo", "pro"] = "demo", **overrides: Any) -> ClientConfig:
    """Client settings for CoinGecko: the public/demo API at 30 calls/min, or the pro API with its key header."""
    if plan not in _HEADERS:
        raise ConfigError(f"coingecko plan must be 'demo' or 'pro', got {plan!r}")
    settings: dict[str, Any] = {
        "name": SOURCE,
        "base_url": base_url or (PRO_BASE_URL if plan == "pro" else DEFAULT_BASE_URL),
        "api_key_header": _HEADERS[plan] if api_key else None,
        "api_key": api_key or None,
        "min_interval_s": per_minute(_RATES[plan]),
        "cache_ttl_s": 30.0,  # CoinGecko refreshes simple prices every 20-60 s; faster polling buys nothing
    }
    settings.update(overrides)
    return ClientConfig(**settings)


def _batches(ids: Iterable[str], size: int) -> list[list[str]]:
    # sorted and de-duplicated so the same set of ids hits the same cache entry
    unique = sorted({i.strip() for i in ids if i and i.strip()})
    return [unique[i:i + size] for i in range(0, len(unique), size)]


def _in_order(records: Iterable[ReferencePrice], ids: Sequence[str]) -> list[ReferencePrice]:
    by_id = {r.asset: r for r in records}
    seen: set[str] = set()
    out = []
    for i in (i.strip() for i in ids):
        if i in by_id and i not in seen:
            seen.add(i)
            out.append(by_id[i])
    return out


def parse_simple_price(body: Any, fetched_ns: int, reject: Reject) -> list[ReferencePrice]:
    """Records of a ``/simple/price`` answer (``{id: {usd, usd_market_cap, ...}}``); bad rows go to ``reject``."""
    out = []
    for asset, row in body.items():
        try:
            if not isinstance(row, dict):
                raise RowError("not_object:row", repr(row)[:80])
            out.append(ReferencePrice(
                source=SOURCE, asset=asset, ts=rows.epoch_s_ns(row, "last_updated_at") or fetched_ns,
                price_usd=rows.number(row, "usd", required=True, positive=True),
                market_cap_usd=rows.number(row, "usd_market_cap"),
                volume_24h_usd=rows.number(row, "usd_24h_vol"),
                change_24h_pct=rows.number(row, "usd_24h_change")))
        except RowError as e:
            reject(e.reason, f"{asset}: {e}")
        except ValidationError as e:
            reject("invalid", f"{asset}: {e.errors()[0]['msg']}")
    return out


def parse_markets(body: list[Any], fetched_ns: int, reject: Reject) -> list[ReferencePrice]:
    """Records of a ``/coins/markets`` answer (a list of coin objects); bad rows go to ``reject``."""
    out = []
    for row in body:
        try:
            if not isinstance(row, dict):
                raise RowError("not_object:row", repr(row)[:80])
            asset = rows.text(row, "id")
            out.append(ReferencePrice(
                source=SOURCE, asset=asset, ts=rows.iso_ns(row, "last_updated") or fetched_ns,
                price_usd=rows.number(row, "current_price", required=True, positive=True),
                market_cap_usd=rows.number(row, "market_cap"),
                volume_24h_usd=rows.number(row, "total_volume"),
                change_24h_pct=rows.number(row, "price_change_percentage_24h")))
        except RowError as e:
            reject(e.reason, f"{row.get('id') if isinstance(row, dict) else '?'}: {e}")
        except ValidationError as e:
            reject("invalid", str(e.errors()[0]["msg"]))
    return out


class CoinGecko(SourceApi):
    """CoinGecko prices, market caps, 24 h volumes and changes in USD, by CoinGecko coin id (``bitcoin``)."""

    def __init__(self, config: ClientConfig | None = None, session: aiohttp.ClientSession | None = None, *,
                 client: RefDataClient | None = None) -> None:
        self.client = client or RefDataClient(config or coingecko_config(), session)


    async def prices(self, ids: Sequence[str], vs: str = "usd") -> list[ReferencePrice]:
        """Latest prices of ``ids`` from ``/simple/price``, in the order asked; unknown ids are left out."""
        if vs.lower() != "usd":
            # ReferencePrice holds USD fields; other quote currencies would be mislabelled
            raise ConfigError(f"coingecko: only vs='usd' fits ReferencePrice, got {vs!r}")
        out: list[ReferencePrice] = []
        for batch in _batches(ids, MAX_IDS_PER_CALL):
            body = await self.client.get_json("/simple/price", {
                "ids": ",".join(batch), "vs_currencies": "usd", "include_market_cap": True,
                "include_24hr_vol": True, "include_24hr_change": True, "include_last_updated_at": True})
            if not isinstance(body, dict):
                raise self.client.bad_shape("/simple/price should answer a JSON object", body)
            got = parse_simple_price(body, self.client.now_ns(), self.client.reject)
            self.client.not_found(len(set(batch) - set(body)), "by /simple/price")
            out.extend(got)
        return _in_order(out, ids)

    async def markets(self, ids: Sequence[str]) -> list[ReferencePrice]:
        """Latest market data of ``ids`` from ``/coins/markets`` (USD), in the order asked."""
        out: list[ReferencePrice] = []
        for batch in _batches(ids, MAX_IDS_PER_CALL):
            body = await self.client.get_json("/coins/markets", {
                "vs_currency": "usd", "ids": ",".join(batch), "per_page": MAX_IDS_PER_CALL, "page": 1,
                "sparkline": False})
            if not isinstance(body, list):
                raise self.client.bad_shape("/coins/markets should answer a JSON list", body)
            got = parse_markets(body, self.client.now_ns(), self.client.reject)
            returned = {row.get("id") for row in body if isinstance(row, dict)}
            self.client.not_found(len(set(batch) - returned), "by /coins/markets")
            out.extend(got)
        return _in_order(out, ids)
