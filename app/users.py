"""``crypto-intel users``: set a user's dashboard password and rotate the signing key of access tokens.

Changes made here are in Postgres at once; running API replicas see them within
``CRYPTO_INTEL_AUTH_TTL_S`` (they re-read revoked sessions and signing keys that often), or at once
when the change is made through the admin API, which also pushes it over Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from app.db import StorageUnavailable, database_url
from connectors.storage.urls import redact


def add_users_parser(sub: argparse._SubParsersAction) -> None:
    users = sub.add_parser("users", help="user passwords and session signing keys (DATABASE_URL)",
                           description="Set dashboard passwords and rotate the key access tokens are signed with.")
    users.add_argument("--database-url", default=None, help="Postgres URL (default: $DATABASE_URL)")
    usub = users.add_subparsers(dest="users_command", required=True, metavar="USERS_COMMAND")
    sp = usub.add_parser("set-password", help="set a user's password (read from stdin, or prompted for)",
                         description="Set USERNAME's password; its open sessions end. The password is read from "
                                     "standard input (one line) or prompted for; --generate makes and prints one.")
    sp.add_argument("username")
    sp.add_argument("--role", choices=["user", "admin"], default="user", help="role its logins get (default user)")
    sp.add_argument("--generate", action="store_true", help="generate a random password and print it once")
    rk = usub.add_parser("rotate-signing-key", help="make a new key sign access tokens")
    rk.add_argument("--retire-previous", action="store_true",
                    help="refuse tokens signed by older keys at once (a leaked key); otherwise they verify "
                         "until they are superseded for longer than an access token lives")
    users.set_defaults(func=cmd_users)


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("new password: ")
        if getpass.getpass("again: ") != first:
            from app.inputs import CommandLineError
            raise CommandLineError("the two passwords differ; nothing changed")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_users(args: argparse.Namespace) -> int:
    import asyncpg
    url = database_url(args)
    password = None
    if args.users_command == "set-password":
        from serve.passwords import check_password, generate_password
        password = generate_password() if args.generate else check_password(_read_password())
    try:
        return asyncio.run(_run(args, url, password))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        raise StorageUnavailable(f"database {redact(url)}: {type(e).__name__}: {e}") from e


async def _run(args: argparse.Namespace, url: str, password: str | None) -> int:
    from serve.accounts import Accounts
    from serve.sessions import SessionStore
    accounts = await Accounts.create(url, max_size=1)
    try:
        store = SessionStore(accounts.pool)
        if args.users_command == "set-password":
            ended = await store.set_password(args.username, password, role=args.role)
            print(f"password set for {args.username} (role {args.role}); {len(ended)} session(s) ended")
            if args.generate:
                print(f"password: {password}")
        else:
            kid, retired = await store.rotate_signing_key(retire_previous=args.retire_previous)
            print(f"signing key {kid} now signs access tokens; retired: {', '.join(retired) or 'none'}")
    finally:
        await accounts.close()
    return 0
