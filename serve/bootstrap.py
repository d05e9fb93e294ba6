"""First start: make sure an admin API key and an admin password (for the dashboard's login) exist,
from the environment or freshly generated."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from serve.accounts import Accounts
from serve.keys import key_id, new_api_key

log = logging.getLogger(__name__)

ENV_VAR = "CRYPTO_INTEL_API_KEY"
PASSWORD_ENV_VAR = "CRYPTO_INTEL_ADMIN_PASSWORD"


def write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` readable by the owner only (0600 from creation, symlinks refused)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_CREAT with mode 0600 means the file is never more readable, not even between open and chmod
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older file may have had a looser mode
        os.write(fd, (secret + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


async def ensure_admin_key(accounts: Accounts, key_file: Path, env_key: str | None) -> str | None:
    """With no users yet, create ``admin`` with an admin key; return a generated key to show once, else None.

    ``env_key`` (from ``CRYPTO_INTEL_API_KEY``) is registered as is and not returned: the operator
    already has it. Without it a key is generated and saved to ``key_file`` (mode 0600).
    """
    if await accounts.count_users():
        return None
    if env_key:
        if await accounts.bootstrap_admin(env_key):
            log.info("registered admin key %s from %s", key_id(env_key), ENV_VAR)
        return None
    key = new_api_key()
    # the file is written inside the transaction: a failed write leaves no admin nobody can log in as
    if not await accounts.bootstrap_admin(key, before_commit=lambda: write_secret(key_file, key)):
        return None  # another replica bootstrapped first
    log.info("generated admin key %s, saved to %s", key_id(key), key_file)
    return key


async def ensure_admin_password(accounts: Accounts, password_file: Path, env_password: str | None) -> str | None:
    """If user ``admin`` exists without a password, give it one (role admin); return a generated one, else None.

    ``env_password`` (from ``CRYPTO_INTEL_ADMIN_PASSWORD``) is set as is and not returned. Without it a
    password is generated and saved to ``password_file`` (mode 0600) before it is set, so it is never
    set without a copy the operator can read.
    """
    from serve.passwords import generate_password
    from serve.sessions import SessionStore
    exists = await accounts.pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM users WHERE username = 'admin') "
        "AND NOT EXISTS (SELECT 1 FROM user_passwords WHERE username = 'admin')")
    if not exists:
        return None
    store = SessionStore(accounts.pool)
    if env_password:
        await store.set_password("admin", env_password, role="admin")
        log.info("set the admin password from %s", PASSWORD_ENV_VAR)
        return None
    password = generate_password()
    write_secret(password_file, password)
    await store.set_password("admin", password, role="admin")
    log.info("generated an admin password, saved to %s", password_file)
    return password
