"""Read queries over the Postgres tables for the HTTP API: candles, signals, structure events,
wallets, token transfers and alerts.

Every query is a constant SQL text with positional parameters; user values never enter the SQL.
Rows come back as dicts keyed by column name, times as int ns UTC, jsonb decoded, NUMERIC token
amounts as exact Python ints.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from connectors.storage.tables import table
from schemas.errors import InputError

DEFAULT_LIMIT = 500
MAX_LIMIT = 10_000
_INT64 = (-(2**63), 2**63 - 1)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC, the zero of Postgres timestamps, in unix µs
_DIRECTIONS = ("both", "in", "out")


class QueryError(InputError):
    """A query argument outside what the queries accept (limit, time, direction, text Postgres refuses)."""


def _text(name: str, value: Any) -> Any:
    """``value``, unless it is a str Postgres cannot store as text (a NUL, a lone surrogate)."""
    if isinstance(value, str):
        bad = "\x00" in value
        if not bad:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                bad = True
        if bad:
            raise QueryError(f"{name} must be UTF-8 text without NUL characters, got {value[:40]!r}")
    return value


def _ns_to_pg(ns: int) -> tuple[int]:
    # Stored times are whole µs. Every time parameter here is a bound of the form ts >= x or ts < x,
    # and rounding x up to the next µs keeps both exact for ns values that are not whole µs.
    return (-(-ns // 1000) - _PG_EPOCH_US,)


def _pg_to_ns(value: tuple[int]) -> int:
    return (value[0] + _PG_EPOCH_US) * 1000


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Binary tuple codecs: timestamptz travels as int µs, so ns round trips use integers only.
    await conn.set_type_codec("timestamptz", schema="pg_catalog", encoder=_ns_to_pg, decoder=_pg_to_ns,
                              format="tuple")
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, schema="pg_catalog", encoder=json.dumps, decoder=json.loads,
                                  format="text")


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise QueryError(f"limit must be an int, got {limit!r}")
    if limit < 1:
        raise QueryError(f"limit must be at least 1, got {limit}")
    return min(limit, MAX_LIMIT)


def _time(name: str, ns: int | None) -> int | None:
    if ns is None:
        return None
    if isinstance(ns, bool) or not isinstance(ns, int):
        raise QueryError(f"{name} must be int nanoseconds since the epoch (UTC), got {ns!r}")
    if not _INT64[0] <= ns <= _INT64[1]:
        raise QueryError(f"{name} is outside the int64 nanosecond range: {ns}")
    return ns


def _address(address: str) -> str:
    if not isinstance(address, str):
        raise QueryError(f"address must be a str, got {address!r}")
    _text("address", address)
    # Hex (EVM) addresses are case-insensitive and stored lowercase; other encodings (base58) are
    # case-sensitive and are left as given.
    return address.lower() if address[:2].lower() == "0x" else address


def _columns(name: str) -> str:
    return ", ".join(f'"{c}"' for c in table(name).names)


class _Where:
    """WHERE conditions built from constant templates, each with its value as the next parameter."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.args: list[Any] = []

    def add(self, template: str, value: Any) -> None:
        for v in value if isinstance(value, list) else [value]:
            _text(template.split(" ")[0].strip("(").split(".")[-1], v)
        self.args.append(value)
        self.parts.append(template.format(f"${len(self.args)}"))

    def sql(self) -> str:
        return " AND ".join(self.parts) if self.parts else "true"

    def limit(self, limit: int) -> str:
        self.args.append(_limit(limit))
        return f"${len(self.args)}"


class Queries:
    """The read side of the storage: a pool of connections and one method per question."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def create(cls, dsn: str, min_size: int = 1, max_size: int = 4) -> Queries:
        """A ``Queries`` over a new connection pool to ``dsn``."""
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection)
        return cls(pool)

    async def close(self) -> None:
        """Close the pool's connections."""
        await self.pool.close()

    async def _fetch(self, sql: str, args: list[Any]) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.pool.fetch(sql, *args)]

    async def latest_candles(self, market: str, timeframe: str, limit: int = DEFAULT_LIMIT,
                             before_ns: int | None = None) -> list[dict[str, Any]]:
        """The market's latest candles of a timeframe (opened before ``before_ns`` if given), newest first."""
        w = _Where()
        w.add("market = {}", market)
        w.add("timeframe = {}", timeframe)
        if _time("before_ns", before_ns) is not None:
            w.add("open_ts < {}", before_ns)
        n = w.limit(limit)
        return await self._fetch(f"SELECT {_columns('candles')} FROM candles WHERE {w.sql()} "
                                 f"ORDER BY open_ts DESC LIMIT {n}", w.args)

    async def signals_since(self, since_ns: int, market: str | None = None,
                            limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
        """Signals fired at or after ``since_ns`` (optionally of one market), oldest first."""
        if _time("since_ns", since_ns) is None:
            raise QueryError("since_ns is required")
        w = _Where()
        w.add("ts >= {}", since_ns)
        if market is not None:
            w.add("market = {}", market)
        n = w.limit(limit)
        return await self._fetch(f"SELECT {_columns('signals')} FROM signals WHERE {w.sql()} "
                                 f"ORDER BY ts, id LIMIT {n}", w.args)

    async def structure_events(self, market: str, timeframe: str | None = None, since_ns: int | None = None,
                               kinds: list[str] | None = None, limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
        """A market's structure events, oldest first: the first ``limit`` confirmed at or after
        ``since_ns``, or without it the latest ``limit``; optionally of one timeframe and some kinds."""
        w = _Where()
        w.add("market = {}", market)
        if timeframe is not None:
            w.add("timeframe = {}", timeframe)
        if kinds is not None:
            if isinstance(kinds, str):
                raise QueryError(f"kinds must be a list of kinds, got the str {kinds!r}")
            w.add("kind = ANY({}::text[])", list(kinds))
        return await self._window("structure_events", "confirmed_ts", "confirmed_ts, ts, id, kind", w,
                                  since_ns, limit)

    async def alerts(self, since_ns: int | None = None, kind: str | None = None, chain: str | None = None,
                     address: str | None = None, limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
        """Alerts, oldest first: the first ``limit`` at or after ``since_ns``, or without it the latest
        ``limit``; optionally of one kind, chain and address."""
        w = _Where()
        if kind is not None:
            w.add("kind = {}", kind)
        if chain is not None:
            w.add("chain = {}", chain)
        if address is not None:
            w.add("address = {}", _address(address))
        return await self._window("alerts", "ts", "ts, id", w, since_ns, limit)

    async def _window(self, name: str, time_col: str, order: str, w: _Where, since_ns: int | None,
                      limit: int) -> list[dict[str, Any]]:
        cols = _columns(name)
        if _time("since_ns", since_ns) is not None:
            w.add(f"{time_col} >= {{}}", since_ns)
            n = w.limit(limit)
            return await self._fetch(f"SELECT {cols} FROM {name} WHERE {w.sql()} ORDER BY {order} LIMIT {n}",
                                     w.args)
        # the latest rows, taken newest first for the limit and handed back in time order
        desc = ", ".join(f"{c} DESC" for c in order.split(", "))
        n = w.limit(limit)
        return await self._fetch(f"SELECT * FROM (SELECT {cols} FROM {name} WHERE {w.sql()} "
                                 f"ORDER BY {desc} LIMIT {n}) t ORDER BY {order}", w.args)

    async def wallet(self, chain: str, address: str) -> dict[str, Any] | None:
        """What is known of a wallet: first/last seen, labels and latest balance per token; None if nothing."""
        address, chain = _address(address), _text("chain", chain)
        async with self.pool.acquire() as conn:
            seen = await conn.fetchrow("SELECT first_seen, last_seen FROM wallets WHERE chain = $1 AND address = $2",
                                       chain, address)
            labels = await conn.fetch("SELECT label, source, created_at FROM wallet_labels "
                                      "WHERE chain = $1 AND address = $2 ORDER BY label", chain, address)
            balances = await conn.fetch("SELECT DISTINCT ON (token_address) token_address, block_number, balance "
                                        "FROM wallet_balances WHERE chain = $1 AND address = $2 "
                                        "ORDER BY token_address, block_number DESC", chain, address)
        if seen is None and not labels and not balances:
            return None
        return {"chain": chain, "address": address,
                "first_seen": seen["first_seen"] if seen else None, "last_seen": seen["last_seen"] if seen else None,
                "labels": [dict(r) for r in labels],
                "balances": [{**dict(r), "balance": int(r["balance"])} for r in balances]}

    async def transfers_by_wallet(self, chain: str, address: str, since_ns: int | None = None,
                                  limit: int = DEFAULT_LIMIT, direction: str = "both") -> list[dict[str, Any]]:
        """Token transfers from and/or to a wallet (at or after ``since_ns`` if given), newest first."""
        if direction not in _DIRECTIONS:
            raise QueryError(f"direction must be one of {', '.join(_DIRECTIONS)}, got {direction!r}")
        w = _Where()
        w.add("chain = {}", chain)
        w.add({"in": "to_address = {0}", "out": "from_address = {0}",
               "both": "(from_address = {0} OR to_address = {0})"}[direction], _address(address))
        return await self._transfers(w, since_ns, limit)

    async def _transfers(self, w: _Where, since_ns: int | None, limit: int) -> list[dict[str, Any]]:
        if _time("since_ns", since_ns) is not None:
            w.add("block_ts >= {}", since_ns)
        n = w.limit(limit)
        rows = await self._fetch(f"SELECT {_columns('token_transfers')} FROM token_transfers WHERE {w.sql()} "
                                 f"ORDER BY block_ts DESC, block_number DESC, log_index DESC LIMIT {n}", w.args)
        for r in rows:
            r["value"] = int(r["value"])  # NUMERIC(78,0) arrives as an exact Decimal
        return rows

    async def signals(self, market: str | None = None, kind: str | None = None, since_ns: int | None = None,
                      after: tuple[int, str] | None = None, limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
        """Signals oldest first, optionally of one market and rule, from ``since_ns``; ``after`` = the
        (ts, id) of the last row of the previous page (keyset pagination: stable under inserts)."""
        w = _Where()
        if market is not None:
            w.add("market = {}", market)
        if kind is not None:
            w.add("kind = {}", kind)
        if _time("since_ns", since_ns) is not None:
            w.add("ts >= {}", since_ns)
        if after is not None:
            w.args += [_time("after", after[0]), _text("after", str(after[1]))]
            w.parts.append(f"(ts, id) > (${len(w.args) - 1}, ${len(w.args)})")
        n = w.limit(limit)
        return await self._fetch(f"SELECT {_columns('signals')} FROM signals WHERE {w.sql()} "
                                 f"ORDER BY ts, id LIMIT {n}", w.args)

    async def signal(self, signal_id: str) -> dict[str, Any] | None:
        """One signal by id, or None."""
        rows = await self._fetch(f"SELECT {_columns('signals')} FROM signals WHERE id = $1 LIMIT 1",
                                 [_text("signal_id", signal_id)])
        return rows[0] if rows else None

    async def markets(self) -> list[dict[str, Any]]:
        """Every market with candles: its timeframes and the open time of its latest candle."""
        return await self._fetch("SELECT market, array_agg(DISTINCT timeframe ORDER BY timeframe) AS timeframes, "
                                 "max(open_ts) AS last_open_ts FROM candles GROUP BY market ORDER BY market", [])

    async def market_summary(self, market: str, timeframe: str) -> dict[str, Any] | None:
        """One market's summary (see :meth:`market_summaries`), or None for an unknown market."""
        rows = await self.market_summaries(timeframe, market)
        return rows[0] if rows else None

    async def market_summaries(self, timeframe: str, market: str | None = None) -> list[dict[str, Any]]:
        """Per market with candles of ``timeframe`` (or just ``market``), by market, in one query: last price,
        change and volume over the 24h (event time) before its latest candle, its latest risk score with
        components, and the strongest signals of those 24h."""
        timeframe = _text("timeframe", timeframe)
        args: list[Any] = [timeframe]
        only = ""
        if market is not None:
            args.append(_text("market", market))
            only = "AND market = $2"
        names = table("signals").names
        # one row per market and top signal (a market without signals in the window: one row of NULLs)
        top = ", ".join(f'top."{c}" AS "s_{c}"' for c in names)
        sql = f"""
            SELECT m.market, last.open_ts, last.close, agg.volume, agg.low, agg.high, first.close AS first_close,
                   risk.ts AS risk_ts, risk.score AS risk_score, risk.components AS risk_components, {top}
            FROM (SELECT DISTINCT market FROM candles WHERE timeframe = $1 {only}) m
            CROSS JOIN LATERAL (SELECT open_ts, close FROM candles c WHERE c.market = m.market
                                AND c.timeframe = $1 AND NOT c.gap ORDER BY c.open_ts DESC LIMIT 1) last
            CROSS JOIN LATERAL (SELECT sum(volume) AS volume, min(low) AS low, max(high) AS high FROM candles c
                                WHERE c.market = m.market AND c.timeframe = $1
                                AND c.open_ts > last.open_ts - interval '24 hours') agg
            LEFT JOIN LATERAL (SELECT close FROM candles c WHERE c.market = m.market AND c.timeframe = $1
                               AND c.open_ts > last.open_ts - interval '24 hours' AND NOT c.gap
                               ORDER BY c.open_ts LIMIT 1) first ON true
            LEFT JOIN LATERAL (SELECT ts, score, components FROM risk_scores r WHERE r.market = m.market
                               AND r.timeframe = $1 ORDER BY r.ts DESC LIMIT 1) risk ON true
            LEFT JOIN LATERAL (SELECT * FROM signals s WHERE s.market = m.market
                               AND s.ts > last.open_ts - interval '24 hours'
                               ORDER BY s.strength DESC, s.ts DESC LIMIT 5) top ON true
            ORDER BY m.market, top.strength DESC, top.ts DESC"""
        out: list[dict[str, Any]] = []
        for r in await self.pool.fetch(sql, *args):
            if not out or out[-1]["market"] != r["market"]:
                change = (r["close"] / r["first_close"] - 1.0) if r["first_close"] else None
                risk = ({"ts": r["risk_ts"], "score": r["risk_score"], "components": r["risk_components"]}
                        if r["risk_ts"] is not None else None)
                out.append({"market": r["market"], "timeframe": timeframe, "ts": r["open_ts"], "price": r["close"],
                            "change_24h": change, "volume_24h": r["volume"], "high_24h": r["high"],
                            "low_24h": r["low"], "risk": risk, "top_signals": []})
            if r["s_id"] is not None:
                out[-1]["top_signals"].append({c: r[f"s_{c}"] for c in names})
        return out

    async def wallets(self, chain: str | None = None, limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
        """Known wallets, most recently seen first, with their labels."""
        w = _Where()
        if chain is not None:
            w.add("w.chain = {}", chain)
        n = w.limit(limit)
        return await self._fetch(
            "SELECT w.chain, w.address, w.first_seen, w.last_seen, coalesce(array_agg(l.label ORDER BY l.label) "
            "FILTER (WHERE l.label IS NOT NULL), '{}') AS labels FROM wallets w LEFT JOIN wallet_labels l "
            f"ON l.chain = w.chain AND l.address = w.address WHERE {w.sql()} GROUP BY w.chain, w.address "
            f"ORDER BY w.last_seen DESC NULLS LAST, w.address LIMIT {n}", w.args)

    async def transfers(self, chain: str | None = None, wallet: str | None = None, token: str | None = None,
                        since_ns: int | None = None, limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
        """Token transfers newest first, optionally touching one wallet and/or of one token."""
        w = _Where()
        if chain is not None:
            w.add("chain = {}", chain)
        if wallet is not None:
            w.add("(from_address = {0} OR to_address = {0})", _address(wallet))
        if token is not None:
            w.add("token_address = {}", _address(token))
        return await self._transfers(w, since_ns, limit)
