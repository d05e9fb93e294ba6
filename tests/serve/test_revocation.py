"""Two separate API servers (two processes on one Postgres and Redis, as two replicas are) over HTTP:
login, refresh rotation and reuse, logout, a revoked key or disabled user refused by the *other*
server within the documented bound (measured), and brute-force lockout per username and per address."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
import redis

from connectors.storage.redis_keys import RedisKeys
from serve.accounts import Accounts
from tests.storage.pg_fixtures import pg_db, pg_migrated, pg_url  # noqa: F401 - fixtures
from tests.storage.redis_fixtures import free_port, redis_keys, redis_url  # noqa: F401 - fixtures

pytestmark = pytest.mark.asyncio(loop_scope="session")

REPO = Path(__file__).resolve().parents[2]
PUSH_BOUND_S = 1.0  # what docs/serving.md promises while Redis pub/sub works (milliseconds in practice)
MAX_USER, MAX_IP, WINDOW_S = 3, 12, 60
PASSWORD = "correct horse battery"


@dataclass
class Servers:
    a: str
    b: str
    database_url: str
    redis_url: str
    keys: RedisKeys
    admin_key: str


def _start(port: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "uvicorn", "serve.api:create_app", "--factory", "--host",
                             "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    import urllib.request
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"API server exited: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} not ready")


@pytest.fixture
def servers(pg_migrated: str, redis_url: str, redis_keys: RedisKeys) -> Iterator[Servers]:  # noqa: F811
    async def users() -> str:
        acc = await Accounts.create(pg_migrated, max_size=1)
        try:
            await acc.create_user("root", tier="enterprise")
            for name, tier in (("alice", "pro"), ("bob", "free")):
                await acc.create_user(name, tier=tier)
            return await acc.issue_key("root", role="admin")
        finally:
            await acc.close()
    admin_key = asyncio.run(users())
    env = {**os.environ, "DATABASE_URL": pg_migrated, "REDIS_URL": redis_url,
           "CRYPTO_INTEL_REDIS_NAMESPACE": redis_keys.namespace, "CRYPTO_INTEL_AUTH_TTL_S": "30",
           "CRYPTO_INTEL_LOGIN_MAX_FAILURES": str(MAX_USER), "CRYPTO_INTEL_LOGIN_MAX_FAILURES_IP": str(MAX_IP),
           "CRYPTO_INTEL_LOGIN_WINDOW_S": str(WINDOW_S),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    ports = free_port(), free_port()
    procs = [_start(p, env) for p in ports]
    try:
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        for url, proc in zip(urls, procs):
            _wait_ready(url, proc)
        yield Servers(urls[0], urls[1], pg_migrated, redis_url, redis_keys, admin_key)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _call(http: aiohttp.ClientSession, method: str, url: str, credential: str | None = None,
                json: dict | None = None) -> tuple[int, dict, dict]:
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    async with http.request(method, url, headers=headers, json=json) as r:
        return r.status, await r.json(), dict(r.headers)


async def _set_password(http, s: Servers, user: str, role: str = "user") -> None:
    status, body, _ = await _call(http, "PUT", f"{s.a}/api/v1/admin/users/{user}/password", s.admin_key,
                                  {"password": PASSWORD, "role": role})
    assert status == 200 and body["item"]["password"] is None, body


async def _login(http, base: str, user: str, password: str = PASSWORD) -> tuple[int, dict, dict]:
    return await _call(http, "POST", f"{base}/api/v1/auth/login", json={"username": user, "password": password})


async def _refused_after(http, url: str, credential: str, timeout_s: float = 40.0) -> float:
    """Seconds until ``credential`` gets 401 at ``url``, polling every 5 ms."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if (await _call(http, "GET", url, credential))[0] == 401:
            return time.monotonic() - t0
        await asyncio.sleep(0.005)
    raise TimeoutError(f"still accepted after {timeout_s}s")


def _clear_login_counters(s: Servers) -> None:
    client = redis.Redis.from_url(s.redis_url)
    for key in client.scan_iter(s.keys.prefix + "rl:login.*"):
        client.delete(key)


async def test_login_refresh_rotation_reuse_and_logout_across_servers(servers: Servers, http) -> None:
    s = servers
    await _set_password(http, s, "alice")
    status, body, headers = await _login(http, s.a, "alice")
    assert status == 200 and headers.get("Cache-Control") == "no-store", body
    pair = body["item"]
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 900 and pair["refresh_expires_in"] > 3600
    assert pair["access_token"].count(".") == 2 and pair["refresh_token"].startswith("cir_")
    # the access token works on the other server too, like a key
    status, markets, _ = await _call(http, "GET", f"{s.b}/api/v1/markets", pair["access_token"])
    assert status == 200 and "items" in markets
    # refresh on B: a new pair; the old refresh token is spent
    status, body, _ = await _call(http, "POST", f"{s.b}/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert status == 200, body
    nxt = body["item"]
    assert nxt["refresh_token"] != pair["refresh_token"]
    assert (await _call(http, "GET", f"{s.a}/api/v1/markets", nxt["access_token"]))[0] == 200
    # the spent token again (copied): 401, and the whole session ends, the new pair included, on both servers
    status, body, _ = await _call(http, "POST", f"{s.a}/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert status == 401 and body["error"]["code"] == "invalid_token"
    for base in (s.a, s.b):
        assert await _refused_after(http, f"{base}/api/v1/markets", nxt["access_token"]) < PUSH_BOUND_S
    status, _, _ = await _call(http, "POST", f"{s.b}/api/v1/auth/refresh", json={"refresh_token": nxt["refresh_token"]})
    assert status == 401
    # logout on A with the access token: B refuses it within the bound, and its refresh token is dead
    status, body, _ = await _login(http, s.a, "alice")
    pair = body["item"]
    assert (await _call(http, "GET", f"{s.b}/api/v1/markets", pair["access_token"]))[0] == 200
    status, body, _ = await _call(http, "POST", f"{s.a}/api/v1/auth/logout", pair["access_token"])
    assert status == 200 and body["item"] == {"logged_out": True, "sessions": 1}
    took = await _refused_after(http, f"{s.b}/api/v1/markets", pair["access_token"])
    print(f"\nlogout on A refused on B after {took * 1000:.1f} ms")
    assert took < PUSH_BOUND_S
    status, body, _ = await _call(http, "GET", f"{s.a}/api/v1/markets", pair["access_token"])
    assert status == 401 and "access token" in body["error"]["message"]
    assert (await _call(http, "POST", f"{s.b}/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}))[0] == 401
    # logout by refresh token alone; nothing to log out: 401
    pair = (await _login(http, s.b, "alice"))[1]["item"]
    status, body, _ = await _call(http, "POST", f"{s.a}/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert status == 200 and body["item"]["sessions"] == 1
    assert await _refused_after(http, f"{s.b}/api/v1/markets", pair["access_token"]) < PUSH_BOUND_S
    assert (await _call(http, "POST", f"{s.a}/api/v1/auth/logout"))[0] == 401


async def test_role_and_tier_identical_for_key_and_token(servers: Servers, http) -> None:
    s = servers
    await _set_password(http, s, "root", role="admin")
    await _set_password(http, s, "bob")  # free tier, role user
    root_token = (await _login(http, s.a, "root"))[1]["item"]["access_token"]
    bob_token = (await _login(http, s.a, "bob"))[1]["item"]["access_token"]
    status, body, _ = await _call(http, "POST", f"{s.a}/api/v1/admin/users/bob/keys", s.admin_key, {"role": "user"})
    bob_key = body["item"]["key"]
    for credential in (s.admin_key, root_token):
        assert (await _call(http, "GET", f"{s.b}/api/v1/admin/users", credential))[0] == 200
    for credential in (bob_key, bob_token):
        status, body, _ = await _call(http, "GET", f"{s.b}/api/v1/admin/users", credential)
        assert status == 403 and body["error"]["code"] == "forbidden"
    # the free tier's rate limit (burst 20) applies to the token as to the key
    for credential in (bob_key, bob_token):
        statuses = await asyncio.gather(*(_call(http, "GET", f"{s.b}/api/v1/alerts", credential) for _ in range(30)))
        limited = [h for st, _, h in statuses if st == 429]
        assert limited and all(int(h["Retry-After"]) >= 1 for h in limited)
        assert sum(st == 200 for st, _, _ in statuses) <= 22
    # a tier change reaches the token's principal at once too (pushed), like the key's
    assert (await _call(http, "PATCH", f"{s.a}/api/v1/admin/users/bob", s.admin_key, {"disabled": True}))[0] == 200
    for credential in (bob_key, bob_token):
        assert await _refused_after(http, f"{s.b}/api/v1/markets", credential) < PUSH_BOUND_S


async def test_revoked_key_refused_by_the_other_server_within_the_bound(servers: Servers, http) -> None:
    s = servers
    timings = []
    for _ in range(3):
        _, body, _ = await _call(http, "POST", f"{s.a}/api/v1/admin/users/alice/keys", s.admin_key, {})
        key, kid = body["item"]["key"], body["item"]["key_id"]
        for base in (s.a, s.b):  # both cache the key's principal now
            assert (await _call(http, "GET", f"{base}/api/v1/markets", key))[0] == 200
        t0 = time.monotonic()
        assert (await _call(http, "DELETE", f"{s.a}/api/v1/admin/keys/{kid}", s.admin_key))[0] == 200
        took = await _refused_after(http, f"{s.b}/api/v1/markets", key)
        timings.append(time.monotonic() - t0)
        assert took < PUSH_BOUND_S
    print(f"\nrevoked key refused by the other server after {[round(t * 1000, 1) for t in timings]} ms "
          f"(bound {PUSH_BOUND_S}s with pushes, CRYPTO_INTEL_AUTH_TTL_S=30 s without)")


async def test_brute_force_locks_per_username_without_telling_who_exists(servers: Servers, http) -> None:
    s = servers
    _clear_login_counters(s)
    await _set_password(http, s, "alice")
    answers = {}
    for user in ("alice", "ghost"):  # one exists, one does not: the same answers throughout
        seen = []
        for _ in range(MAX_USER):
            status, body, _ = await _login(http, s.a, user, "wrong password!")
            seen.append((status, body))
        status, body, headers = await _login(http, s.b, user, "wrong password!")
        seen.append((status, body))
        assert status == 429 and body["error"]["code"] == "too_many_attempts", body
        assert 1 <= int(headers["Retry-After"]) <= WINDOW_S
        answers[user] = seen
    assert answers["alice"] == answers["ghost"]
    assert answers["alice"][0] == (401, {"error": {"code": "invalid_credentials", "message": "wrong username or password"}})
    # locked: even the right password waits; another user is not affected
    assert (await _login(http, s.a, "alice"))[0] == 429
    await _set_password(http, s, "bob")
    assert (await _login(http, s.a, "bob"))[0] == 200


async def test_brute_force_locks_per_address_and_a_good_login_takes_its_attempt_back(servers: Servers, http) -> None:
    s = servers
    _clear_login_counters(s)
    await _set_password(http, s, "alice")
    for _ in range(MAX_IP + 3):  # good logins do not count against the address
        assert (await _login(http, s.a, "alice"))[0] == 200
    for i in range(MAX_IP):  # every attempt a new username: only the address counter grows
        assert (await _login(http, s.b, f"guess{i}", "wrong password!"))[0] == 401
    status, body, headers = await _login(http, s.a, "alice")
    assert status == 429 and body["error"]["code"] == "too_many_attempts" and int(headers["Retry-After"]) >= 1


async def test_unknown_user_and_wrong_password_take_similar_time(servers: Servers, http) -> None:
    s = servers
    await _set_password(http, s, "alice")

    async def timed(user: str) -> float:
        _clear_login_counters(s)
        t0 = time.perf_counter()
        status, _, _ = await _login(http, s.a, user, "wrong password!")
        assert status == 401
        return time.perf_counter() - t0
    known = [await timed("alice") for _ in range(7)]
    unknown = [await timed(f"nobody{i}") for i in range(7)]
    k, u = statistics.median(known), statistics.median(unknown)
    print(f"\nlogin refusal, median: known user {k * 1000:.0f} ms, unknown user {u * 1000:.0f} ms")
    assert min(k, u) > 0.02  # both paid for a scrypt
    assert abs(k - u) < 0.5 * max(k, u), (known, unknown)
