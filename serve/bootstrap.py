"""First start: make sure an admin API key exists, from the environment or freshly generated."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from serve.accounts import Accounts
from serve.keys import key_id, new_api_key

log = logging.getLogger(__name__)

ENV_VAR = "CRYPTO_INTEL_API_KEY"


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
