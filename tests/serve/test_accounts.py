"""Accounts against real Postgres and Redis: keys stored hashed and shown once, authentication,
roles and tiers, admin bootstrap, per-key rate limits, and no plain key in any log line."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio

import serve.keys
from connectors.storage.redis_keys import RedisKeys
from schemas.errors import CryptoIntelError
from serve.accounts import (
    AccountError,
    Accounts,
    DuplicateUserError,
    Principal,
    UnknownKeyError,
    UnknownRoleError,
    UnknownTierError,
    UnknownUserError,
)
from serve.bootstrap import ensure_admin_key
from serve.keys import hash_key, key_id, new_api_key
from serve.limits import KeyRateLimiter
from serve.tiers import TIERS, Tier
from tests.storage.pg_fixtures import pg_db, pg_migrated, pg_url  # noqa: F401 - fixtures
from tests.storage.redis_fixtures import aredis, redis_keys, redis_url  # noqa: F401 - fixtures

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def accounts(pg_migrated: str) -> AsyncIterator[Accounts]:  # noqa: F811
    acc = await Accounts.create(pg_migrated, max_size=3)
    yield acc
    await acc.close()


async def _api_keys_text(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return "\n".join(await conn.fetchval("SELECT coalesce(array_agg(t::text), '{}') FROM api_keys t"))
    finally:
        await conn.close()


async def test_key_shown_once_and_only_its_hash_stored(accounts: Accounts, pg_migrated: str) -> None:  # noqa: F811
    user = await accounts.create_user("alice", email="alice@example.com")
    assert user["username"] == "alice" and user["tier"] == "free" and not user["disabled"]
    key = await accounts.issue_key("alice", label="laptop")
    assert key.startswith("ci_") and len(key) >= 40
    stored = await _api_keys_text(pg_migrated)
    assert hash_key(key) in stored
    assert key not in stored and key[3:] not in stored and key[3:20] not in stored
    assert key != await accounts.issue_key("alice")  # a new key every time


async def test_authenticate_ok_wrong_revoked_disabled(accounts: Accounts) -> None:
    await accounts.create_user("bob")
    key = await accounts.issue_key("bob")
    other = await accounts.issue_key("bob")
    p = await accounts.authenticate(key)
    assert p == Principal("bob", "user", TIERS["free"], key_id(key)) and not p.is_admin
    assert key not in repr(p)
    for wrong in (new_api_key(), key[:-1], key + "x", "", "ci_", None):
        assert await accounts.authenticate(wrong) is None
    assert await accounts.revoke_key(key_id(key)) == key_id(key)
    assert await accounts.authenticate(key) is None
    assert (await accounts.authenticate(other)).username == "bob"  # only that key is revoked
    with pytest.raises(UnknownKeyError, match="no active key"):
        await accounts.revoke_key(key_id(key))  # already revoked
    await accounts.disable_user("bob")
    assert await accounts.authenticate(other) is None
    await accounts.enable_user("bob")
    assert (await accounts.authenticate(other)).username == "bob"
    await accounts.revoke_key(hash_key(other))  # the full hash works too
    assert await accounts.authenticate(other) is None


async def test_revoke_needs_an_id_or_hash(accounts: Accounts) -> None:
    await accounts.create_user("carol")
    key = await accounts.issue_key("carol")
    for bad in (key, "abc", "zzzzzzzz", "'; DROP TABLE api_keys; --"):
        with pytest.raises(UnknownKeyError):
            await accounts.revoke_key(bad)
    with pytest.raises(UnknownKeyError, match="no active key"):
        await accounts.revoke_key("0" * 64)
    assert await accounts.authenticate(key) is not None


async def test_roles_and_tiers(accounts: Accounts, pg_migrated: str) -> None:  # noqa: F811
    await accounts.create_user("root", tier="enterprise")
    admin = await accounts.authenticate(await accounts.issue_key("root", role="admin"))
    assert admin.is_admin and admin.tier is TIERS["enterprise"] and admin.tier.allows_channel("whales")
    with pytest.raises(UnknownRoleError, match="admin, user"):
        await accounts.issue_key("root", role="superuser")
    with pytest.raises(UnknownTierError, match="free, pro, enterprise"):
        await accounts.create_user("dave", tier="platinum")
    with pytest.raises(UnknownTierError):
        await accounts.set_tier("root", "platinum")
    assert await accounts.count_users() == 1  # nothing half-created
    # a row written outside this module with the column's default role is refused, not trusted
    legacy = new_api_key()
    conn = await asyncpg.connect(pg_migrated)
    try:
        await conn.execute("INSERT INTO api_keys (key_hash, username) VALUES ($1, 'root')", hash_key(legacy))
    finally:
        await conn.close()
    assert await accounts.authenticate(legacy) is None


async def test_user_errors_are_specific(accounts: Accounts) -> None:
    await accounts.create_user("erin", email="o'brien@example.com")
    with pytest.raises(DuplicateUserError, match="already exists") as e:
        await accounts.create_user("erin")
    assert isinstance(e.value, CryptoIntelError)
    for call in (accounts.issue_key("nobody"), accounts.set_tier("nobody", "pro"), accounts.disable_user("nobody")):
        with pytest.raises(UnknownUserError, match="nobody"):
            await call
    with pytest.raises(AccountError, match="invalid username"):
        await accounts.create_user("x'; DROP TABLE users; --")
    with pytest.raises(AccountError, match="at least"):
        await accounts.register_key("erin", "short")
    assert [u["username"] for u in await accounts.list_users()] == ["erin"]


async def test_set_tier_takes_effect(accounts: Accounts) -> None:
    await accounts.create_user("frank")
    key = await accounts.issue_key("frank")
    assert (await accounts.authenticate(key)).tier.name == "free"
    await accounts.set_tier("frank", "pro")
    p = await accounts.authenticate(key)
    assert p.tier is TIERS["pro"] and p.tier.allows_channel("structure") and not p.tier.allows_channel("whales")
    users = await accounts.list_users()
    assert users == [dict(users[0], username="frank", tier="pro", active_keys=1, disabled=False)]


async def test_bootstrap_with_env_key(accounts: Accounts, tmp_path: Path) -> None:
    env_key = new_api_key()
    key_file = tmp_path / "admin.key"
    assert await ensure_admin_key(accounts, key_file, env_key) is None  # the operator already has it
    assert not key_file.exists()
    p = await accounts.authenticate(env_key)
    assert p.username == "admin" and p.is_admin and p.tier.name == "enterprise"
    assert await ensure_admin_key(accounts, key_file, new_api_key()) is None
    assert await accounts.count_users() == 1


async def test_bootstrap_generates_private_key_file(accounts: Accounts, tmp_path: Path) -> None:
    key_file = tmp_path / "secrets" / "admin.key"
    key = await ensure_admin_key(accounts, key_file, None)
    assert key and key_file.read_text().strip() == key
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert (await accounts.authenticate(key)).is_admin
    assert await ensure_admin_key(accounts, key_file, None) is None  # users exist: nothing changes
    assert key_file.read_text().strip() == key


async def test_bootstrap_tightens_old_file_and_rolls_back_on_write_error(accounts: Accounts, tmp_path: Path) -> None:
    key_file = tmp_path / "admin.key"
    blocker = tmp_path / "dir.key"
    blocker.mkdir()
    with pytest.raises(OSError):
        await ensure_admin_key(accounts, blocker, None)  # cannot save the key: no admin nobody can log in as
    assert await accounts.count_users() == 0
    key_file.write_text("old\n")
    key_file.chmod(0o644)
    key = await ensure_admin_key(accounts, key_file, None)
    assert key_file.read_text().strip() == key and stat.S_IMODE(key_file.stat().st_mode) == 0o600


async def test_concurrent_bootstrap_creates_one_admin(pg_migrated: str, tmp_path: Path) -> None:  # noqa: F811
    replicas = [await Accounts.create(pg_migrated) for _ in range(3)]
    try:
        got = await asyncio.gather(*(ensure_admin_key(a, tmp_path / f"k{i}", None) for i, a in enumerate(replicas)))
        assert sum(k is not None for k in got) == 1
        assert await replicas[0].count_users() == 1
    finally:
        for a in replicas:
            await a.close()


async def test_rate_limiter_denies_after_burst_and_recovers(aredis: redis.asyncio.Redis,  # noqa: F811
                                                           redis_keys: RedisKeys) -> None:  # noqa: F811
    tiny = Tier("tiny", rate_per_s=20.0, burst=3, channels=frozenset({"candles"}), max_markets=1,
                history_days=1, max_ws_connections=1)
    limiter = KeyRateLimiter(aredis, redis_keys)
    key = new_api_key()
    p = Principal("gina", "user", tiny, key_id(key))
    assert all([(await limiter.check(p)).allowed for _ in range(3)])
    denied = await limiter.check(p)
    assert not denied.allowed and 0 < denied.retry_after_ms <= 50
    assert (await limiter.check(Principal("hal", "user", tiny, key_id(new_api_key())))).allowed  # per key
    await asyncio.sleep(denied.retry_after_ms / 1000 + 0.02)
    assert (await limiter.check(p)).allowed
    names = [k.decode() async for k in aredis.scan_iter(match=redis_keys.pattern())]
    assert names and all(key not in n and key[3:] not in n for n in names)
    assert any(n.endswith(f"key.tiny:{key_id(key)}") for n in names)
    assert (await limiter.check(Principal("gina", "user", TIERS["free"], key_id(key)))).allowed  # bucket per tier


async def test_authenticate_compares_in_constant_time(accounts: Accounts, monkeypatch: pytest.MonkeyPatch) -> None:
    await accounts.create_user("ivy")
    key = await accounts.issue_key("ivy")
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(serve.keys.hmac, "compare_digest", counting)
    assert await accounts.authenticate(key) is not None
    assert calls == [(hash_key(key).encode(), hash_key(key).encode())]


async def test_plain_key_never_logged(accounts: Accounts, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    admin_key = await ensure_admin_key(accounts, tmp_path / "admin.key", None)
    await accounts.create_user("jack")
    key = await accounts.issue_key("jack", role="admin")
    await accounts.authenticate(key)
    await accounts.authenticate(key + "x")
    await accounts.revoke_key(key_id(key))
    await accounts.authenticate(key)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert key_id(key) in logged  # the id is what identifies a key in logs
    for secret in (key, key[3:], admin_key, admin_key[3:]):
        assert secret not in logged and secret not in caplog.text
