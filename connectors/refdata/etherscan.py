"""Etherscan-compatible account history: native, internal, ERC-20 and ERC-721 transfers of one address.

Each list is paged with ``page``/``offset`` (oldest first) until a short page. Etherscan never shows more
than 10,000 rows of one query (``page * offset <= 10,000``), so after a full window the next query starts at
the last block seen, and rows of that block already taken are skipped by their identity.

Rows become :class:`HistoryRow` records holding a :class:`schemas.records.ValueTransfer` with exact integer
values. Failed transactions and reverted internal calls (``isError`` "1") are kept, flagged ``is_error``, so
the history shows every attempt; their value never moved and callers must not count it
(:func:`balances_from_history` skips them). Gas fees are not transfers and are not in the history.

The API key travels as the ``apikey`` query parameter, added below :class:`RefDataClient` by a thin session
wrapper: the client prints its query in messages and logs, so the key never reaches it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from connectors.refdata.http import (
    ClientConfig,
    ParamValue,
    RateLimited,
    RefDataClient,
    RefDataError,
    RequestRejected,
    SourceApi,
)
from connectors.refdata.rows import RowError
from schemas.errors import ConfigError
from schemas.records import NATIVE, ValueTransfer

log = logging.getLogger(__name__)

SOURCE = "etherscan"
DEFAULT_BASE_URL = "https://api.etherscan.io/v2/api"
MAX_WINDOW = 10_000  # Etherscan refuses page * offset above this ("Result window is too large")
RATE_SLACK = 1.05  # Etherscan counts arrivals; spacing exactly 1/rate leaves no room for network jitter
_EMPTY = ("no transactions found", "no records found")
_HASH = re.compile(r"0x[0-9a-f]{64}")
_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
# fields that name a row and stay the same between queries (``confirmations`` grows, so not the whole row)
_IDENTITY = ("hash", "logIndex", "traceId", "from", "to", "contractAddress", "value", "tokenID")

RowKey = tuple[str, ...]


class EtherscanRejected(RequestRejected):
    """Etherscan answered ``status "0"`` with an error (bad address, unsupported chain, query timeout)."""


class InvalidApiKey(EtherscanRejected):
    """Etherscan refused the API key (missing, invalid, or too many invalid attempts); the key is not shown."""


class WindowExhausted(RefDataError):
    """One block holds more rows for the address than a 10,000-row window: the history cannot be paged past it."""


@dataclass(frozen=True)
class EtherscanConfig(ClientConfig):
    """Client settings plus the endpoint path, the chain and the key sent as ``apikey`` (never in repr)."""

    path: str = "/v2/api"
    chain_id: int | None = 1  # None: a v1-style explorer that takes no ``chainid``
    query_api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path.startswith("/"):
            raise ConfigError(f"{self.name}: path must start with '/', got {self.path!r}")
        if self.chain_id is not None and self.chain_id < 1:
            raise ConfigError(f"{self.name}: chain_id must be a positive chain id or None, got {self.chain_id}")


def etherscan_config(base_url: str = DEFAULT_BASE_URL, api_key: str | None = None, chain_id: int | None = 1,
                     calls_per_second: float = 5, **overrides: Any) -> EtherscanConfig:
    """Client settings for an Etherscan-compatible API at ``calls_per_second`` (the free tier's 5 by default)."""
    parts = urlsplit(base_url)
    if parts.query or parts.fragment:
        # a key pasted into the URL would show in every message; it belongs in api_key
        raise ConfigError(f"{SOURCE}: base_url takes no query or fragment; pass the key as api_key")
    if calls_per_second <= 0:
        raise ConfigError(f"{SOURCE}: calls_per_second must be > 0, got {calls_per_second}")
    settings: dict[str, Any] = {
        "name": SOURCE,
        "base_url": urlunsplit((parts.scheme, parts.netloc, "", "", "")),
        "path": parts.path or "/",
        "chain_id": chain_id,
        "query_api_key": api_key or None,
        "min_interval_s": RATE_SLACK / calls_per_second,
        "cache_ttl_s": 0.0,  # history pages are read once, and a 200 "rate limit" answer must never be cached
        "backoff_s": 1.0,  # Etherscan's limit is per second: a shorter wait just hits it again
        "timeout_s": 30.0,  # large pages of old addresses take Etherscan seconds to build
    }
    settings.update(overrides)
    return EtherscanConfig(**settings)


@dataclass(frozen=True)
class HistoryRow:
    """One transfer of an address's history; an ``is_error`` row moved no value and must not be counted."""

    block_number: int
    timestamp: int  # block time, unix seconds
    transfer: ValueTransfer
    is_error: bool
    token_id: int | None = None  # ERC-721 rows: the token that moved (``transfer.value`` is 1)


class _KeyedSession:
    """Adds ``apikey`` to each GET of :class:`RefDataClient`, which never sees (and so never prints) the key."""

    def __init__(self, api_key: str | None, session: aiohttp.ClientSession | None) -> None:
        self._key = api_key
        self._session = session
        self._owns = session is None

    def request(self, method: str, url: str, *, params: Mapping[str, str] | None = None, **kw: Any) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()  # opened lazily, inside the running loop
        query = dict(params or {})
        if self._key:
            query["apikey"] = self._key
        # the API never redirects; following one would put the keyed URL into aiohttp's error text
        return self._session.request(method, url, params=query, allow_redirects=False, **kw)

    async def close(self) -> None:
        if self._owns and self._session is not None:
            await self._session.close()
            self._session = None

    def __repr__(self) -> str:
        return "_KeyedSession(apikey=***)"


# ---- row parsing ------------------------------------------------------------------------------------
def _uint(row: Mapping[str, Any], key: str) -> int:
    """A non-negative integer from a decimal string, exactly (a float would round values above 2**53)."""
    value = row.get(key)
    if value is None or value == "":
        raise RowError(f"missing:{key}")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()):
        raise RowError(f"not_integer:{key}", repr(value)[:80])
    return int(value)


def _pattern(row: Mapping[str, Any], key: str, pattern: re.Pattern[str], *, required: bool = True) -> str:
    value = row.get(key)
    if value is None or value == "":
        if required:
            raise RowError(f"missing:{key}")
        return ""
    if not isinstance(value, str) or not pattern.fullmatch(value.lower()):
        raise RowError(f"bad:{key}", repr(value)[:80])
    return value.lower()


def _flag(row: Mapping[str, Any], key: str) -> bool:
    value = row.get(key)
    if value not in ("0", "1"):
        raise RowError(f"missing:{key}" if value in (None, "") else f"bad:{key}", repr(value)[:80])
    return value == "1"


def _recipient(row: Mapping[str, Any]) -> str:
    # a contract creation has no ``to``; the value went to the new contract
    return (_pattern(row, "to", _ADDRESS, required=False)
            or _pattern(row, "contractAddress", _ADDRESS, required=True))


def parse_native(row: Mapping[str, Any]) -> HistoryRow:
    """A ``txlist`` row: the transaction's own coin transfer (``log_index`` -1)."""
    failed = _flag(row, "isError") or row.get("txreceipt_status") == "0"
    return HistoryRow(_uint(row, "blockNumber"), _uint(row, "timeStamp"), ValueTransfer(
        _pattern(row, "hash", _HASH), -1, NATIVE, _pattern(row, "from", _ADDRESS), _recipient(row),
        _uint(row, "value")), failed)


def parse_internal(row: Mapping[str, Any]) -> HistoryRow:
    """A ``txlistinternal`` row: coin moved by a contract call (no log index of its own, so -1)."""
    return HistoryRow(_uint(row, "blockNumber"), _uint(row, "timeStamp"), ValueTransfer(
        _pattern(row, "hash", _HASH), -1, NATIVE, _pattern(row, "from", _ADDRESS), _recipient(row),
        _uint(row, "value")), _flag(row, "isError"))


def parse_token(row: Mapping[str, Any]) -> HistoryRow:
    """A ``tokentx`` row: an ERC-20 ``Transfer`` log (reverted logs are never listed, so never an error)."""
    return HistoryRow(_uint(row, "blockNumber"), _uint(row, "timeStamp"), ValueTransfer(
        _pattern(row, "hash", _HASH), _uint(row, "logIndex"), _pattern(row, "contractAddress", _ADDRESS),
        _pattern(row, "from", _ADDRESS), _pattern(row, "to", _ADDRESS), _uint(row, "value")), False)


def parse_nft(row: Mapping[str, Any]) -> HistoryRow:
    """A ``tokennfttx`` row: one ERC-721 token moved (value 1, the token in ``token_id``)."""
    return HistoryRow(_uint(row, "blockNumber"), _uint(row, "timeStamp"), ValueTransfer(
        _pattern(row, "hash", _HASH), _uint(row, "logIndex"), _pattern(row, "contractAddress", _ADDRESS),
        _pattern(row, "from", _ADDRESS), _pattern(row, "to", _ADDRESS), 1), False, _uint(row, "tokenID"))


def row_key(row: Mapping[str, Any]) -> RowKey:
    """Identity of a raw row across overlapping queries: hash, logIndex/traceId and the stable fields."""
    return tuple(str(row.get(k, "")).lower() for k in _IDENTITY)


def _block_of(row: Mapping[str, Any]) -> int | None:
    try:
        return _uint(row, "blockNumber")
    except RowError:
        return None


# ---- the client ------------------------------------------------------------------------------------
class Etherscan(SourceApi):
    """Account history from an Etherscan-compatible API, paged past the 10,000-row window, within its rate."""

    def __init__(self, config: EtherscanConfig | None = None, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config or etherscan_config()
        self._session = _KeyedSession(self.config.query_api_key, session)
        self.client = RefDataClient(self.config, cast(aiohttp.ClientSession, self._session))

    def __repr__(self) -> str:
        return f"Etherscan(base_url={self.config.base_url + self.config.path!r}, chain_id={self.config.chain_id})"

    async def close(self) -> None:
        """Close the session if this client opened it (a session passed in belongs to the caller)."""
        await self.client.close()
        await self._session.close()

    async def native_transactions(self, address: str, start_block: int = 0, end_block: int | None = None,
                                  page_size: int = 1000) -> list[HistoryRow]:
        """Normal transactions to or from ``address`` (``txlist``), oldest first; failed ones flagged."""
        return await self._history("txlist", parse_native, address, start_block, end_block, page_size)

    async def internal_transactions(self, address: str, start_block: int = 0, end_block: int | None = None,
                                    page_size: int = 1000) -> list[HistoryRow]:
        """Coin moved by contract calls to or from ``address`` (``txlistinternal``), oldest first."""
        return await self._history("txlistinternal", parse_internal, address, start_block, end_block, page_size)

    async def token_transfers(self, address: str, start_block: int = 0, end_block: int | None = None,
                              page_size: int = 1000, contract: str | None = None) -> list[HistoryRow]:
        """ERC-20 transfers to or from ``address`` (``tokentx``), of one token contract if given."""
        extra = {"contractaddress": _checked_address(contract)} if contract else {}
        return await self._history("tokentx", parse_token, address, start_block, end_block, page_size, extra)

    async def nft_transfers(self, address: str, start_block: int = 0, end_block: int | None = None,
                            page_size: int = 1000, contract: str | None = None) -> list[HistoryRow]:
        """ERC-721 transfers to or from ``address`` (``tokennfttx``), of one collection if given."""
        extra = {"contractaddress": _checked_address(contract)} if contract else {}
        return await self._history("tokennfttx", parse_nft, address, start_block, end_block, page_size, extra)

    async def _history(self, action: str, parse: Callable[[Mapping[str, Any]], HistoryRow], address: str,
                       start_block: int, end_block: int | None, page_size: int,
                       extra: Mapping[str, ParamValue] | None = None) -> list[HistoryRow]:
        """Every row of one account list: pages of a window, then windows from the last block seen."""
        address = _checked_address(address)
        if not 1 <= page_size <= MAX_WINDOW:
            raise ConfigError(f"{SOURCE}: page_size must be 1..{MAX_WINDOW}, got {page_size}")
        if start_block < 0 or (end_block is not None and end_block < start_block):
            raise ConfigError(f"{SOURCE}: need 0 <= start_block <= end_block, got {start_block}..{end_block}")
        pages = MAX_WINDOW // page_size  # the last page that keeps page * offset within the window
        out: list[HistoryRow] = []
        start = start_block
        taken: set[RowKey] = set()  # keys of block ``start`` rows already in ``out``
        while True:
            last_block: int | None = None
            last_keys: set[RowKey] = set()
            for page in range(1, pages + 1):
                params: dict[str, ParamValue] = {"module": "account", "action": action, "address": address,
                                                 "startblock": start, "page": page, "offset": page_size,
                                                 "sort": "asc", **(extra or {})}
                if end_block is not None:
                    params["endblock"] = end_block
                raw = await self._call(params)
                for row in raw:
                    if not isinstance(row, dict):
                        self.client.reject("not_object:row", repr(row)[:80])
                        continue
                    key, block = row_key(row), _block_of(row)
                    if block == start and key in taken:
                        continue  # seen at the end of the previous window
                    if block is not None and (last_block is None or block >= last_block):
                        if block != last_block:
                            last_block, last_keys = block, set()
                        last_keys.add(key)
                    try:
                        out.append(parse(row))
                    except RowError as e:
                        self.client.reject(e.reason, f"{action} {row.get('hash', '?')}: {e}")
                if len(raw) < page_size:
                    return out
            # a full window: Etherscan shows no more, so ask again from the last block seen
            if last_block is None or last_block <= start:
                self.client.stats["errors"] += 1
                raise WindowExhausted(f"{SOURCE}: {action} for {address}: block {start} alone fills a "
                                      f"{MAX_WINDOW}-row window; the rest of the history cannot be paged",
                                      url=self.config.base_url + self.config.path)
            start, taken = last_block, last_keys

    async def _call(self, params: dict[str, ParamValue]) -> list[Any]:
        """The ``result`` list of one call; "rate limit" answers are waited out and retried (counted)."""
        cfg = self.config
        query: dict[str, ParamValue] = dict(params) if cfg.chain_id is None else {"chainid": cfg.chain_id, **params}
        url = cfg.base_url + cfg.path
        what = f"{cfg.name}: {params.get('action')}"
        for attempt in range(1, cfg.attempts + 1):
            try:
                body = await self.client.get_json(cfg.path, query, use_cache=attempt == 1)
            except RefDataError as e:
                raise self._redacted(e) from None
            if not isinstance(body, dict) or "status" not in body or "result" not in body:
                raise self._redacted(self.client.bad_shape(f"{what} should answer {{status, message, result}}", body))
            status, message, result = str(body["status"]), str(body.get("message", "")), body["result"]
            if status == "1":
                if not isinstance(result, list):
                    raise self._redacted(self.client.bad_shape(f"{what} result should be a JSON list", result))
                return result
            if message.lower().startswith(_EMPTY):
                return []
            text = self._scrub(result if isinstance(result, str) and result else message)
            lowered = text.lower()
            # rate limit first: its text ("... please use API Key for higher rate limit") also names the key
            if "rate limit" not in lowered:
                self.client.stats["errors"] += 1
                if "api key" in lowered or "apikey" in lowered:
                    raise InvalidApiKey(f"{what}: the API key was refused: {text}", url=url, status=200)
                raise EtherscanRejected(f"{what}: rejected: {text}", url=url, status=200)
            self.client.stats["rate_limited"] += 1
            if "daily" in lowered or "/day" in lowered:
                # the daily quota resets at midnight UTC; waiting that out here would stall the caller for hours
                self.client.stats["errors"] += 1
                raise RateLimited(f"{what}: daily quota used up: {text}", url=url, status=200)
            if attempt == cfg.attempts:
                break
            wait = self.client.backoff.base(attempt)  # a stated limit: wait the whole step
            self.client.stats["retries"] += 1
            log.warning("%s: %s; waiting %.2fs (attempt %d/%d)", what, text, wait, attempt, cfg.attempts)
            # through the client's own schedule, so every caller sharing it holds back too (as after a 429)
            self.client.defer(wait)
        self.client.stats["errors"] += 1
        raise RateLimited(f"{what}: still rate limited after {cfg.attempts} attempts", url=url, status=200)

    def _scrub(self, text: str) -> str:
        key = self.config.query_api_key
        return text.replace(key, "***") if key else text

    def _redacted(self, error: RefDataError) -> RefDataError:
        """``error`` with the key masked, should aiohttp ever have put the keyed URL into its text."""
        error.args = tuple(self._scrub(a) if isinstance(a, str) else a for a in error.args)
        error.url = self._scrub(error.url)
        return error


def _checked_address(address: str | None) -> str:
    text = (address or "").strip().lower()
    if not _ADDRESS.fullmatch(text):
        raise ConfigError(f"{SOURCE}: expected a 0x-prefixed 20-byte hex address, got {address!r}")
    return text


# ---- wallet backfill ---------------------------------------------------------------------------------
async def backfill_wallet(client: Etherscan, address: str, start_block: int = 0,
                          end_block: int | None = None) -> list[HistoryRow]:
    """Native, internal and ERC-20 history of ``address`` merged in (block_number, log_index) order.

    Within a block, rows with log index -1 (native, then internal) come before token logs, each list in
    Etherscan's order; Python's sort is stable, so the merge is deterministic.
    """
    rows: list[HistoryRow] = []
    # one after another: they share the client's rate limit, so running them at once would not be faster
    rows += await client.native_transactions(address, start_block, end_block)
    rows += await client.internal_transactions(address, start_block, end_block)
    rows += await client.token_transfers(address, start_block, end_block)
    rows.sort(key=lambda r: (r.block_number, r.transfer.log_index))
    return rows


def balances_from_history(rows: Iterable[HistoryRow], address: str) -> dict[str, int]:
    """Exact net flow per token (``""`` = native coin) of ``address``; failed rows and gas fees not counted."""
    me = address.lower()
    out: dict[str, int] = {}
    for row in rows:
        if row.is_error:
            continue  # the transaction reverted: its value never moved
        t = row.transfer
        if t.to_address == me:
            out[t.token] = out.get(t.token, 0) + t.value
        if t.from_address == me:
            out[t.token] = out.get(t.token, 0) - t.value
    return out
