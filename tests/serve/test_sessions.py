"""Sessions against real Postgres and Redis, below HTTP: passwords stored as scrypt only, refresh-token
rotation and reuse detection, logout, signing-key rotation and retirement, and one process's
authentication cache picking up revocations another process pushes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from connectors.storage.redis_keys import RedisKeys
from serve import jwt_tokens
from serve.accounts import Accounts
from serve.auth_cache import AuthCache, session_key_id
from serve.keys import key_id
from serve.sessions import (
    InvalidCredentialsError,
    InvalidRefreshTokenError,
    RefreshReuseError,
    SessionSettings,
    SessionStore,
)
from tests.storage.pg_fixtures import pg_db, pg_migrated, pg_url  # noqa: F401 - fixtures
from tests.storage.redis_fixtures import redis_keys, redis_url  # noqa: F401 - fixtures

pytestmark = pytest.mark.asyncio(loop_scope="session")
PASSWORD = "a long enough password"
SETTINGS = SessionSettings(auth_ttl_s=30.0)


@pytest_asyncio.fixture(loop_scope="session")
async def accounts(pg_migrated: str) -> AsyncIterator[Accounts]:  # noqa: F811
    acc = await Accounts.create(pg_migrated, max_size=4)
    await acc.create_user("alice", tier="pro")
    yield acc
    await acc.close()


@pytest_asyncio.fixture(loop_scope="session")
async def two_processes(accounts: Accounts, redis_url: str, redis_keys: RedisKeys):  # noqa: F811
    """Two authentication caches on one database and Redis, as two API replicas have."""
    a = AuthCache(accounts, redis_url, redis_keys, SETTINGS)
    b = AuthCache(accounts, redis_url, redis_keys, SETTINGS)
    await a.start()
    await b.start()
    for cache in (a, b):
        await _until(lambda c=cache: c.subscribed)
    yield a, b
    await a.close()
    await b.close()


async def _until(check, timeout_s: float = 5.0) -> float:
    """Seconds until ``check()`` (sync or async) is true."""
    t0 = time.monotonic()
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError("condition still false")
        await asyncio.sleep(0.01)


async def test_password_stored_as_scrypt_only_and_login_checked(accounts: Accounts, pg_migrated: str) -> None:  # noqa: F811
    store = SessionStore(accounts.pool, SETTINGS)
    assert await store.set_password("alice", PASSWORD, role="admin") == []
    conn = await asyncpg.connect(pg_migrated)
    try:
        row = await conn.fetchrow("SELECT hash, role FROM user_passwords WHERE username = 'alice'")
    finally:
        await conn.close()
    assert row["hash"].startswith("scrypt$ln=15,r=8,p=1$") and PASSWORD not in row["hash"] and row["role"] == "admin"
    assert await store.verify_login("alice", PASSWORD) == "admin"
    for user, password in (("alice", PASSWORD + "!"), ("nobody", PASSWORD), ("alice", "")):
        with pytest.raises(InvalidCredentialsError, match="wrong username or password"):
            await store.verify_login(user, password)
    await accounts.disable_user("alice")
    with pytest.raises(InvalidCredentialsError):
        await store.verify_login("alice", PASSWORD)


async def test_refresh_rotates_and_reuse_revokes_the_family(accounts: Accounts) -> None:
    store = SessionStore(accounts.pool, SETTINGS)
    first = await store.create_session("alice", "user")
    second = await store.refresh(first.refresh_token)
    assert second.sid == first.sid and second.refresh_token != first.refresh_token
    third = await store.refresh(second.refresh_token)
    # the first token again: someone copied it; the whole session ends, the newest token included
    with pytest.raises(RefreshReuseError) as e:
        await store.refresh(first.refresh_token)
    assert e.value.sid == first.sid and first.sid in await store.recently_revoked()
    with pytest.raises(InvalidRefreshTokenError):
        await store.refresh(third.refresh_token)
    for bad in ("", "cir_unknown", "ci_notarefreshtoken", third.refresh_token + "x"):
        with pytest.raises(InvalidRefreshTokenError):
            await store.refresh(bad)


async def test_concurrent_use_of_one_refresh_token_is_a_reuse(accounts: Accounts) -> None:
    store = SessionStore(accounts.pool, SETTINGS)
    s = await store.create_session("alice", "user")
    results = await asyncio.gather(*(store.refresh(s.refresh_token) for _ in range(4)), return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, RefreshReuseError) for r in results if isinstance(r, Exception))


async def test_expired_refresh_token_and_session_end(accounts: Accounts) -> None:
    store = SessionStore(accounts.pool, SessionSettings(refresh_ttl_s=1, session_max_s=30))
    s = await store.create_session("alice", "user")
    await asyncio.sleep(1.1)
    with pytest.raises(InvalidRefreshTokenError, match="expired"):
        await store.refresh(s.refresh_token)
    s = await store.create_session("alice", "user")
    assert await store.revoke_session(s.sid) and not await store.revoke_session(s.sid)
    with pytest.raises(InvalidRefreshTokenError):
        await store.refresh(s.refresh_token)


async def test_access_token_principal_same_as_a_key_and_logout_pushed(accounts: Accounts, two_processes) -> None:
    a, b = two_processes
    key = await accounts.issue_key("alice", role="user")
    session = await a.sessions.create_session("alice", "user")
    token, ttl = await a.issue_access_token(session)
    assert ttl == 900 and jwt_tokens.looks_like_jwt(token)
    by_key, by_token = await b.authenticate(key), await b.authenticate(token)
    assert (by_token.username, by_token.role, by_token.tier) == (by_key.username, by_key.role, by_key.tier)
    assert by_token.tier.name == "pro" and by_token.key_id == session_key_id(session.sid)
    # logout on one process: the other refuses the token once the push arrives, without asking Postgres
    await a.sessions.revoke_session(session.sid)
    await a.publish("sid", session.sid)
    took = await _until(lambda: _refused(b, token))
    assert await a.authenticate(token) is None
    assert took < 1.0, took


async def _refused(cache: AuthCache, credential: str) -> bool:
    return await cache.authenticate(credential) is None


async def test_signing_key_rotation_old_tokens_verify_until_retired(accounts: Accounts, two_processes) -> None:
    a, b = two_processes
    old = await a.issue_access_token(await a.sessions.create_session("alice", "user"))
    kid, retired = await a.sessions.rotate_signing_key()
    await a.publish("signing_keys", kid)
    await _until(lambda: b._signer is not None and b._signer.kid == kid)
    new = await a.issue_access_token(await a.sessions.create_session("alice", "user"))
    assert jwt_tokens.header(new[0])["kid"] == kid != jwt_tokens.header(old[0])["kid"] and retired == []
    assert await b.authenticate(old[0]) is not None and await b.authenticate(new[0]) is not None
    # a leaked key: retire everything older at once
    kid2, retired = await a.sessions.rotate_signing_key(retire_previous=True)
    assert set(retired) == {jwt_tokens.header(old[0])["kid"], kid}
    await a.publish("signing_keys", kid2)
    await _until(lambda: _refused(b, old[0]))
    assert await b.authenticate(new[0]) is None
    listed = await a.sessions.list_signing_keys()
    assert [k["kid"] for k in listed if k["signing"]] == [kid2] and "secret" not in listed[0]


async def test_unknown_kid_reloads_once_then_refuses(accounts: Accounts, two_processes) -> None:
    a, b = two_processes
    await a.issue_access_token(await a.sessions.create_session("alice", "user"))
    # a key created by another process after b loaded its keys: b reloads on the unknown kid (no push)
    kid, _ = await SessionStore(accounts.pool, SETTINGS).rotate_signing_key()
    await a._load_signing_keys()
    token, _ = await a.issue_access_token(await a.sessions.create_session("alice", "user"))
    assert jwt_tokens.header(token)["kid"] == kid
    assert await b.authenticate(token) is not None
    forged = jwt_tokens.encode({"sub": "alice", "sid": "x", "role": "admin", "typ": "access", "iss": "crypto-intel",
                                "iat": time.time(), "exp": time.time() + 60}, b"k" * 32, "not-a-kid")
    assert await b.authenticate(forged) is None


async def test_key_revocation_and_user_changes_pushed(accounts: Accounts, two_processes) -> None:
    a, b = two_processes
    key = await accounts.issue_key("alice")
    token, _ = await a.issue_access_token(await a.sessions.create_session("alice", "user"))
    assert await b.authenticate(key) is not None and await b.authenticate(token) is not None  # cached now
    await accounts.set_tier("alice", "free")
    await a.publish("user", "alice")
    await _until(lambda: _tier_is(b, key, "free"))
    assert (await b.authenticate(token)).tier.name == "free"
    await accounts.disable_user("alice")
    await a.publish("user", "alice")
    await _until(lambda: _refused(b, token))
    assert await b.authenticate(key) is None
    await accounts.enable_user("alice")
    await a.publish("user", "alice")
    await _until(lambda: _tier_is(b, key, "free"))  # the refusal is not cached past the push either
    revoked = await accounts.revoke_key(key_id(key))
    await a.publish("key", revoked)
    await _until(lambda: _refused(b, key))


async def _tier_is(cache: AuthCache, credential: str, name: str) -> bool:
    who = await cache.authenticate(credential)
    return who is not None and who.tier.name == name


async def test_lost_push_still_applied_within_the_ttl(accounts: Accounts, redis_url: str,  # noqa: F811
                                                      redis_keys: RedisKeys) -> None:  # noqa: F811
    settings = SessionSettings(auth_ttl_s=1.0)
    a, b = AuthCache(accounts, redis_url, redis_keys, settings), AuthCache(accounts, redis_url, redis_keys, settings)
    try:
        key = await accounts.issue_key("alice")
        session = await a.sessions.create_session("alice", "user")
        token, _ = await a.issue_access_token(session)
        assert await b.authenticate(token) is not None and await b.authenticate(key) is not None
        # revoked in Postgres only: no push at all
        await a.sessions.revoke_session(session.sid)
        await accounts.revoke_key(key_id(key))
        took_token = await _until(lambda: _refused(b, token), timeout_s=5)
        took_key = await _until(lambda: _refused(b, key), timeout_s=5)
        assert took_token < settings.auth_ttl_s + 1.2 and took_key < settings.auth_ttl_s + 1.2, (took_token, took_key)
    finally:
        await a.close()
        await b.close()


async def test_first_start_gives_admin_a_password_saved_0600(pg_migrated: str, tmp_path) -> None:  # noqa: F811
    import stat

    from serve.bootstrap import ensure_admin_key, ensure_admin_password
    acc = await Accounts.create(pg_migrated, max_size=2)
    try:
        assert await ensure_admin_password(acc, tmp_path / "pw", None) is None  # no admin yet: nothing to do
        await ensure_admin_key(acc, tmp_path / "admin-api-key", None)
        password = await ensure_admin_password(acc, tmp_path / "admin-password", None)
        saved = tmp_path / "admin-password"
        assert password and saved.read_text().strip() == password
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
        assert await SessionStore(acc.pool).verify_login("admin", password) == "admin"
        assert await ensure_admin_password(acc, saved, None) is None  # it has one now: unchanged
        assert saved.read_text().strip() == password
    finally:
        await acc.close()
