"""``crypto-intel db``: apply, inspect and roll back migrations; keep partitions and retention."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from urllib.parse import urlsplit

from app import flags
from connectors.storage.urls import redact
from schemas.errors import ConfigError, CryptoIntelError


def database_url(args: argparse.Namespace) -> str:
    """The database to use: ``--database-url`` or ``DATABASE_URL``, checked to be a Postgres URL."""
    url = getattr(args, "database_url", None)
    source = "--database-url"
    if not url:
        url, source = os.environ.get("DATABASE_URL"), "DATABASE_URL"
    if not url:
        raise ConfigError("no database given: set DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/test) "
                          "or pass --database-url")
    check_postgres_url(url, source)
    return url


def check_postgres_url(url: str, source: str) -> None:
    """``url`` reads as ``postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DBNAME``; the error never shows a password."""
    example = "write postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME, e.g. postgresql://postgres@127.0.0.1:5432/test"
    shown = re.sub(r"(://[^:@/]*):[^@/]*@", r"\1:***@", url)
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not url.startswith(f"{parts.scheme}://"):
        raise ConfigError(f"{source} {shown!r} is not a Postgres URL; {example}")
    try:
        parts.port  # noqa: B018 - raises ValueError when the port is not a number
    except ValueError:
        raise ConfigError(f"{source} {shown!r}: the port is not a number 0..65535; {example}") from None


def add_db_parser(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="database migrations and upkeep (DATABASE_URL)",
                        description="Apply, inspect and roll back the SQL migrations in migrations/, and keep "
                                    "time partitions and retention on plain Postgres.")
    db.add_argument("--database-url", default=None, help="Postgres URL (default: $DATABASE_URL)")
    dsub = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    m = dsub.add_parser("migrate", help="apply pending migrations (safe to run from several processes)")
    m.add_argument("--to", type=flags.non_negative_int, default=None, help="stop after this version (default: all)")
    m.add_argument("--mode", choices=["auto", "plain", "timescale"], default="auto",
                   help="time-series tables as TimescaleDB hypertables or partitioned tables (default auto: "
                        "hypertables when the extension is available)")
    dsub.add_parser("status", help="list migrations, whether applied, and the storage mode")
    d = dsub.add_parser("downgrade", help="roll back migrations above a version")
    d.add_argument("--to", type=flags.non_negative_int, required=True, help="version to keep (0 rolls back everything)")
    mt = dsub.add_parser("maintain", help="create partitions ahead and drop those past retention (plain Postgres)")
    mt.add_argument("--ahead-months", type=flags.non_negative_int, default=3,
                    help="months of partitions to create ahead (default 3)")
    db.set_defaults(func=cmd_db)


def cmd_db(args: argparse.Namespace) -> int:
    import asyncpg
    try:
        return _run_db(args, database_url(args))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        raise StorageUnavailable(f"database {redact(database_url(args))}: {type(e).__name__}: {e}") from e


class StorageUnavailable(CryptoIntelError, ConnectionError):
    """The database cannot be reached or refused the command."""


def _run_db(args: argparse.Namespace, url: str) -> int:
    from connectors.storage import maintain, migrate
    if args.db_command == "migrate":
        done = asyncio.run(migrate.migrate(url, target=args.to, mode=args.mode))
        for mig in done:
            print(f"applied {mig.version:04d}_{mig.name}")
        print("database is up to date" if not done else f"{len(done)} migration(s) applied")
    elif args.db_command == "downgrade":
        for mig in asyncio.run(migrate.downgrade(url, args.to)):
            print(f"rolled back {mig.version:04d}_{mig.name}")
    elif args.db_command == "status":
        states, facts = asyncio.run(migrate.status(url))
        for s in states:
            when = s.applied_at.isoformat(timespec="seconds") if s.applied_at else "pending"
            print(f"{s.version:04d}_{s.name:<24} {when}{'  MODIFIED since applied' if s.modified else ''}")
        ts = ("installed" if facts["timescaledb_installed"] else
              "available, not installed" if facts["timescaledb_available"] else "not available")
        print(f"timescaledb: {ts}")
        kinds = sorted(set(facts["time_tables"].values()))
        print(f"time-series tables: {len(facts['time_tables'])} ({', '.join(kinds) or 'none yet'})")
    elif args.db_command == "maintain":
        report = asyncio.run(maintain.maintain(url, ahead_months=args.ahead_months))
        for table, n in sorted(report.created.items()):
            print(f"{table}: {n} partition(s) created")
        for name in report.dropped:
            print(f"dropped {name} (past retention)")
        if report.hypertables:
            print(f"hypertables left to TimescaleDB policies: {', '.join(report.hypertables)}")
    return 0
