"""Backtest runs in Postgres (table ``backtests``, migration 0008): save one run, list them newest
first a page at a time, read one back.

A run is a dict keyed by the table's columns (``COLUMNS``): ``id`` and ``strategy`` are required,
anything else may be missing or None. ``params``, ``settings`` and ``metrics`` are JSON documents
(``metrics`` = ``{"portfolio", "benchmark", "markets", "counters"}``), ``markets`` a list of names,
``start_ts``/``end_ts`` int nanoseconds UTC, ``created_at`` a datetime, int ns or ISO-8601 text
(default: when the row is first written).

The functions take a connection or a pool and work whatever type codecs it has set (the API's
pool decodes timestamptz as int ns and jsonb as Python values, a bare connection does not):
values travel as text and bigint, and rows come back alike either way, with ``created_at`` as
int nanoseconds UTC.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from connectors.storage.queries import QueryError
from schemas.errors import InputError
from schemas.json_safe import json_safe

COLUMNS = ("id", "created_at", "strategy", "strategy_version", "params", "settings", "timeframe", "engine",
           "markets", "start_ts", "end_ts", "bars", "trades", "metrics", "out_dir")
ID_MAX = 128
ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9_.:-]{{0,{ID_MAX - 1}}}$"  # ids the API can take back in a path
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
_ID = re.compile(ID_PATTERN)
_INT64 = (-(2**63), 2**63 - 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_JSON_COLUMNS = ("params", "settings", "metrics")
_INT_COLUMNS = ("start_ts", "end_ts", "bars", "trades")
_TEXT_COLUMNS = ("strategy", "strategy_version", "timeframe", "engine", "out_dir")

# created_at as int ns UTC, exact (extract gives numeric), whatever codec the connection has
_CREATED_NS = "(extract(epoch FROM created_at) * 1000000)::bigint * 1000 AS created_at"
_SUMMARY_COLUMNS = ("id", _CREATED_NS, "strategy", "strategy_version", "params::text AS params", "timeframe",
                    "engine", "markets", "start_ts", "end_ts", "bars", "trades",
                    "coalesce(metrics->'portfolio', '{}')::text AS summary")
_FULL_COLUMNS = ("id", _CREATED_NS, "strategy", "strategy_version", "params::text AS params",
                 "settings::text AS settings", "timeframe", "engine", "markets", "start_ts", "end_ts", "bars",
                 "trades", "metrics::text AS metrics", "out_dir")
_DECODE = ("params", "settings", "metrics", "summary")

_UPSERT = """
INSERT INTO backtests (id, created_at, strategy, strategy_version, params, settings, timeframe, engine, markets,
                       start_ts, end_ts, bars, trades, metrics, out_dir)
VALUES ($1, coalesce($2::text::timestamptz, now()), $3, $4, $5::text::jsonb, $6::text::jsonb, $7, $8, $9::text[],
        $10, $11, $12, $13, $14::text::jsonb, $15)
ON CONFLICT (id) DO UPDATE SET
    created_at = coalesce($2::text::timestamptz, backtests.created_at),
    strategy = EXCLUDED.strategy, strategy_version = EXCLUDED.strategy_version, params = EXCLUDED.params,
    settings = EXCLUDED.settings, timeframe = EXCLUDED.timeframe, engine = EXCLUDED.engine,
    markets = EXCLUDED.markets, start_ts = EXCLUDED.start_ts, end_ts = EXCLUDED.end_ts, bars = EXCLUDED.bars,
    trades = EXCLUDED.trades, metrics = EXCLUDED.metrics, out_dir = EXCLUDED.out_dir
"""


class BacktestRecordError(InputError):
    """A run dict cannot be stored as given (unknown key, missing id, a value of the wrong type)."""


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode"
    return None


def _json_text(name: str, value: Any) -> str:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise BacktestRecordError(f"backtest {name} must be a dict, got {type(value).__name__}")
    try:
        text = json.dumps(json_safe(value), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise BacktestRecordError(f"backtest {name} is not JSON: {e}") from None
    if "\\u0000" in text:
        raise BacktestRecordError(f"backtest {name} holds a NUL character, which jsonb cannot store")
    return text


def _int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise BacktestRecordError(f"backtest {name} must be an int, got {value!r}")
    value = int(value)
    if not _INT64[0] <= value <= _INT64[1]:
        raise BacktestRecordError(f"backtest {name} does not fit int64: {value}")
    return value


def _created_text(value: Any) -> str | None:
    """``created_at`` as ISO-8601 text Postgres parses exactly (µs), or None for "now"."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise BacktestRecordError(f"backtest created_at is not an ISO-8601 time: {value[:64]!r}") from None
    elif isinstance(value, datetime):
        pass
    elif not isinstance(value, bool) and hasattr(value, "__index__"):
        ns = int(value)
        value = _EPOCH + timedelta(microseconds=ns // 1000)
    else:
        raise BacktestRecordError(f"backtest created_at must be a datetime, int ns or ISO-8601 text, got {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def _args(run: dict) -> list[Any]:
    if not isinstance(run, dict):
        raise BacktestRecordError(f"a backtest run is a dict, got {type(run).__name__}")
    unknown = sorted(set(run) - set(COLUMNS))
    if unknown:
        raise BacktestRecordError(f"unknown backtest field(s): {', '.join(map(str, unknown))}; "
                                  f"the columns are {', '.join(COLUMNS)}")
    rid = run.get("id")
    if not isinstance(rid, str) or not _ID.match(rid):
        raise BacktestRecordError(f"backtest id must be 1-{ID_MAX} characters of letters, digits and _.:- "
                                  f"(starting with a letter or digit), got {rid!r}")
    if not isinstance(run.get("strategy"), str) or not run["strategy"]:
        raise BacktestRecordError(f"backtest strategy must be a non-empty str, got {run.get('strategy')!r}")
    out: dict[str, Any] = {"id": rid, "created_at": _created_text(run.get("created_at"))}
    for name in _TEXT_COLUMNS:
        v = run.get(name)
        if v is not None and not isinstance(v, str):
            raise BacktestRecordError(f"backtest {name} must be a str, got {v!r}")
        if isinstance(v, str) and _text_problem(v):
            raise BacktestRecordError(f"backtest {name} {_text_problem(v)}")
        out[name] = v
    for name in _JSON_COLUMNS:
        out[name] = _json_text(name, run.get(name))
    for name in _INT_COLUMNS:
        out[name] = _int(name, run.get(name))
    markets = run.get("markets")
    markets = [] if markets is None else markets
    if isinstance(markets, str) or not all(isinstance(m, str) for m in markets):
        raise BacktestRecordError(f"backtest markets must be a list of str, got {markets!r}")
    bad = next((m for m in markets if _text_problem(m)), None)
    if bad is not None:
        raise BacktestRecordError(f"backtest market {bad!r} {_text_problem(bad)}")
    out["markets"] = list(markets)
    return [out[c] for c in COLUMNS]


def _row(record: asyncpg.Record) -> dict[str, Any]:
    row = dict(record)
    for name in _DECODE:
        if name in row and isinstance(row[name], str):
            row[name] = json.loads(row[name])
    if row.get("markets") is not None:
        row["markets"] = list(row["markets"])
    return row


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise QueryError(f"limit must be an int, got {limit!r}")
    if limit < 1:
        raise QueryError(f"limit must be at least 1, got {limit}")
    return min(limit, MAX_LIMIT)


async def save_backtest(pool_or_conn: asyncpg.Pool | asyncpg.Connection, run: dict) -> None:
    """Store ``run`` under its id; saving the same id again replaces the row (one row per id).

    ``created_at`` given replaces the stored one; missing or None keeps it (the first save's time).
    Raises ``BacktestRecordError`` for a run that cannot be stored as given.
    """
    await pool_or_conn.execute(_UPSERT, *_args(run))


async def list_backtests(conn: asyncpg.Pool | asyncpg.Connection, limit: int = DEFAULT_LIMIT,
                         after: tuple[int, str] | None = None) -> list[dict[str, Any]]:
    """Runs newest first (``created_at`` desc, ties by ``id`` desc), at most ``limit`` (capped at
    ``MAX_LIMIT``); ``after`` = (created_at ns, id) of the last row of the previous page (keyset
    pagination: stable while runs are added). Each row has the table's columns except ``settings``,
    ``metrics`` and ``out_dir``, plus ``summary``: the portfolio metrics."""
    args: list[Any] = []
    where = "true"
    if after is not None:
        ts, rid = after
        if isinstance(ts, bool) or not isinstance(ts, int) or not _INT64[0] <= ts <= _INT64[1]:
            raise QueryError(f"after must start with int nanoseconds, got {ts!r}")
        if not isinstance(rid, str) or _text_problem(rid):
            raise QueryError(f"after must end with a text id, got {rid!r}")
        # µs are what Postgres keeps: a cursor time of ns that are not whole µs rounds up, keeping "<" exact
        args += [(_EPOCH + timedelta(microseconds=-(-ts // 1000))).isoformat(), rid]
        where = "(created_at, id) < ($1::text::timestamptz, $2)"
    args.append(_limit(limit))
    rows = await conn.fetch(f"SELECT {', '.join(_SUMMARY_COLUMNS)} FROM backtests WHERE {where} "
                            f"ORDER BY created_at DESC, id DESC LIMIT ${len(args)}", *args)
    return [_row(r) for r in rows]


async def get_backtest(conn: asyncpg.Pool | asyncpg.Connection, backtest_id: str) -> dict[str, Any] | None:
    """The run with this id, every column (``created_at`` as int ns UTC), or None."""
    if not isinstance(backtest_id, str) or _text_problem(backtest_id):
        raise QueryError(f"backtest id must be UTF-8 text without NUL characters, got {backtest_id!r:.60}")
    row = await conn.fetchrow(f"SELECT {', '.join(_FULL_COLUMNS)} FROM backtests WHERE id = $1", backtest_id)
    return None if row is None else _row(row)


def save_backtest_sync(database_url: str, run: dict, *, migrate: bool = True) -> None:
    """``save_backtest`` from synchronous code: brings the database to the latest schema first (as
    every command that writes does; ``migrate=False`` skips that), then saves over one connection
    and closes it. The run is checked before anything connects."""
    _args(run)

    async def go() -> None:
        if migrate:
            from connectors.storage.migrate import migrate as apply
            await apply(database_url)
        conn = await asyncpg.connect(database_url)
        try:
            await save_backtest(conn, run)
        finally:
            await conn.close()
    asyncio.run(go())
