"""Bad input over real HTTP (the Serve app of api_fixtures): malformed cursors, text Postgres refuses
(NUL, lone surrogates, invalid UTF-8) in every path and query parameter that reaches a query,
out-of-range numbers, wrong JSON bodies, unknown routes and methods. Each answers a 4xx in the one
error shape ``{"error": {"code": str, "message": str}}``, never a 500 or a plain-text body."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from yarl import URL

from tests.serve.api_fixtures import RunningApi

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# percent-encoded as they go on the wire: NUL, a lone surrogate (U+D800 as UTF-8), bytes that are
# not UTF-8 (a lone continuation byte, a truncated sequence, an overlong NUL, past U+10FFFF)
BAD_TEXT = ["%00", "a%00b", "%ED%A0%80", "x%ED%B0%80", "%FF", "%80", "%C3%28", "%C0%80", "%F4%90%80%80"]


def _b64(raw: bytes | str) -> str:
    raw = raw.encode() if isinstance(raw, str) else raw
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _q(value: str) -> str:
    """Percent-encode a cursor (base64url is safe, anything else we pass is already encoded or odd on purpose)."""
    from urllib.parse import quote
    return quote(value, safe="")


class Client:
    def __init__(self, api: RunningApi, session: aiohttp.ClientSession, key: str) -> None:
        self.api, self.session, self.key = api, session, key

    async def send(self, method: str, target: str, *, body: bytes | str | None = None,
                   headers: dict | None = None, key: str | None = "own") -> tuple[int, dict, str]:
        """``target`` goes on the wire exactly as given (already percent-encoded)."""
        h = {"X-API-Key": self.key} if key == "own" else ({"X-API-Key": key} if key else {})
        h.update(headers or {})
        async with self.session.request(method, URL(self.api.url + target, encoded=True), headers=h,
                                        data=body) as r:
            return r.status, dict(r.headers), await r.text(errors="replace")

    async def json(self, method: str, target: str, value, **kw) -> tuple[int, dict, str]:
        return await self.send(method, target, body=json.dumps(value),
                               headers={"Content-Type": "application/json"}, **kw)


def assert_error(result: tuple[int, dict, str], statuses: set[int], code: str | None = None, what=None) -> dict:
    status, headers, text = result
    assert status in statuses, (what, status, text[:300])
    assert headers.get("Content-Type", "").startswith("application/json"), (what, headers, text[:300])
    body = json.loads(text)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, (what, body)
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str), (what, body)
    if code is not None:
        assert body["error"]["code"] == code, (what, body)
    return body


@pytest.fixture(scope="module")
def own_admin(running_api: RunningApi) -> str:
    """An admin key for this module alone (its rate limit and its user are nobody else's)."""
    from serve.accounts import Accounts

    async def make() -> str:
        accounts = await Accounts.create(running_api.database_url, max_size=1)
        try:
            name = f"errors-admin-{secrets.token_hex(3)}"
            await accounts.create_user(name, tier="enterprise")
            return await accounts.issue_key(name, role="admin")
        finally:
            await accounts.close()
    return asyncio.run(make())


@asynccontextmanager
async def _client(api: RunningApi, key: str) -> AsyncIterator[Client]:
    # made in the test's own event loop (aiohttp sessions are bound to one)
    async with aiohttp.ClientSession() as s:
        yield Client(api, s, key)


def _market(api: RunningApi) -> str:
    return next(m for m in api.markets if m.endswith("BTC"))


def _path_targets(m: str) -> list[tuple[str, str]]:
    """(method, path with {} for the value) for every path parameter that reaches a query or the cache."""
    return [("GET", "/api/v1/markets/{}/candles"), ("GET", "/api/v1/markets/{}/indicators"),
            ("GET", "/api/v1/markets/{}/structure"), ("GET", "/api/v1/signals/{}"), ("GET", "/api/v1/wallets/{}"),
            ("PATCH", "/api/v1/admin/users/{}"), ("POST", "/api/v1/admin/users/{}/keys"),
            ("DELETE", "/api/v1/admin/keys/{}")]


def _query_targets(m: str) -> list[tuple[str, str]]:
    """(path, query parameter) for every query parameter that reaches a query or the cache."""
    candles, indicators, structure = (f"/api/v1/markets/{m}/{x}" for x in ("candles", "indicators", "structure"))
    return [(candles, "tf"), (candles, "start"), (candles, "end"), (candles, "cursor"), (candles, "limit"),
            (indicators, "tf"), (indicators, "names"), (structure, "tf"),
            ("/api/v1/market/summary", "tf"), ("/api/v1/market/summary", "market"),
            ("/api/v1/signals", "market"), ("/api/v1/signals", "kind"), ("/api/v1/signals", "since"),
            ("/api/v1/signals", "cursor"), ("/api/v1/signals", "limit"),
            ("/api/v1/wallets", "chain"), ("/api/v1/wallets", "limit"), ("/api/v1/wallets/0xabc", "chain"),
            ("/api/v1/transactions", "wallet"), ("/api/v1/transactions", "token"), ("/api/v1/transactions", "since"),
            ("/api/v1/transactions", "chain"), ("/api/v1/transactions", "limit"),
            ("/api/v1/alerts", "kind"), ("/api/v1/alerts", "since"), ("/api/v1/alerts", "limit")]


async def test_text_postgres_refuses_in_every_path_parameter(running_api: RunningApi, own_admin: str) -> None:
    async with _client(running_api, own_admin) as client:
        for method, path in _path_targets(_market(running_api)):
            for bad in BAD_TEXT:
                body = json.dumps({}) if method in ("PATCH", "POST") else None
                result = await client.send(method, path.format(bad), body=body,
                                           headers={"Content-Type": "application/json"} if body else None)
                assert_error(result, {422}, "invalid_text", (method, path, bad))


async def test_text_postgres_refuses_in_every_query_parameter(running_api: RunningApi, own_admin: str) -> None:
    async with _client(running_api, own_admin) as client:
        for path, name in _query_targets(_market(running_api)):
            for bad in BAD_TEXT:
                assert_error(await client.send("GET", f"{path}?{name}={bad}"), {422}, "invalid_text", (path, name, bad))
            # a parameter name that is not text is refused as well
            assert_error(await client.send("GET", f"{path}?{name}%00=1"), {422}, "invalid_text", (path, name))


async def test_nul_sent_by_a_client_that_encodes_for_us(running_api: RunningApi, own_admin: str) -> None:
    """aiohttp percent-encodes a raw "\\x00" in params and paths itself: still a 422, never a 500."""
    async with _client(running_api, own_admin) as client:
        m = _market(running_api)
        h = {"X-API-Key": client.key}
        for path, name in _query_targets(m):
            async with client.session.get(running_api.url + path, params={name: "a\x00b"}, headers=h) as r:
                assert_error((r.status, dict(r.headers), await r.text()), {422}, "invalid_text", (path, name))
        async with client.session.get(running_api.url + "/api/v1/signals/a\x00b", headers=h) as r:
            assert_error((r.status, dict(r.headers), await r.text()), {422}, "invalid_text")


async def test_malformed_cursors(running_api: RunningApi, own_admin: str) -> None:
    async with _client(running_api, own_admin) as client:
        m = _market(running_api)
        garbage = ["not a cursor!", "%%%", "====", "é", "a" * 511, _b64(b"\xff\xfe\x00\x01"), _b64(b"\xed\xa0\x80"),
                   _b64("abc"), _b64("12a"), _b64("1.5"), _b64(" 12"), _b64("9" * 40), _b64(str(2**63)),
                   _b64(str(-(2**63) - 1)), _b64("\x00"), _b64("1\x00"), _b64("|"), "A"]
        one_field = garbage + [_b64("1|2")]  # candles cursors hold one field: the open time
        two_fields = garbage + [_b64("123"), _b64("abc|id"), _b64(f"{10**30}|id"), _b64("1|"), _b64("|id"),
                                _b64("1|a\x00"), _b64(b"1|\xed\xa0\x80")]  # signals: ts|id
        for cursor in one_field:
            result = await client.send("GET", f"/api/v1/markets/{m}/candles?cursor={_q(cursor)}")
            assert_error(result, {422}, "invalid_cursor", ("candles", cursor))
        for cursor in two_fields:
            result = await client.send("GET", f"/api/v1/signals?cursor={_q(cursor)}")
            assert_error(result, {422}, "invalid_cursor", ("signals", cursor))
        # far too long: refused before decoding
        assert_error(await client.send("GET", f"/api/v1/signals?cursor={'A' * 5000}"), {422}, "invalid_request")
        # the cursors the API hands out still work
        status, _, text = await client.send("GET", "/api/v1/signals?limit=2")
        assert status == 200
        status, _, _ = await client.send("GET", f"/api/v1/signals?limit=2&cursor={json.loads(text)['next_cursor']}")
        assert status == 200


async def test_out_of_range_numbers(running_api: RunningApi, own_admin: str) -> None:
    async with _client(running_api, own_admin) as client:
        m = _market(running_api)
        pages = [f"/api/v1/markets/{m}/candles", "/api/v1/signals", "/api/v1/wallets", "/api/v1/transactions",
                 "/api/v1/alerts"]
        for path in pages:
            for limit in ("0", "-1", str(10**30), str(-(10**30)), "1.5", "abc", "1e3", "%00", "NaN"):
                assert_error(await client.send("GET", f"{path}?limit={limit}"), {422}, what=(path, limit))
        times = [str(10**40), str(-(10**40)), str(2**63), str(-(2**63) - 1), "99999999999", "1e400", "NaN", "inf",
                 "9999-12-31T23:59:59%2B00:00", "0001-01-01T00:00:00-23:59", "2024-13-01", "yesterday", "1" * 65]
        for path, name in [(f"/api/v1/markets/{m}/candles", "start"), (f"/api/v1/markets/{m}/candles", "end"),
                           ("/api/v1/signals", "since"), ("/api/v1/transactions", "since"), ("/api/v1/alerts", "since")]:
            for t in times:
                assert_error(await client.send("GET", f"{path}?{name}={t}"), {422}, what=(path, name, t))
        # negative, huge and odd ids find nothing: 404 in the one shape
        nobody = f"-nobody-{secrets.token_hex(3)}"  # "-1" or "0" may be users by now (schemathesis makes some)
        for ident in ("-1", str(-(10**30)), str(10**40), "0"):
            assert_error(await client.send("GET", f"/api/v1/signals/{ident}"), {404}, "not_found", ident)
            assert_error(await client.send("GET", f"/api/v1/wallets/{ident}"), {404}, "not_found", ident)
            assert_error(await client.send("DELETE", f"/api/v1/admin/keys/{ident}"), {404}, "not_found", ident)
            user = f"{ident}{nobody}"
            assert_error(await client.json("PATCH", f"/api/v1/admin/users/{user}", {"tier": "pro"}), {404}, "not_found")
            assert_error(await client.json("POST", f"/api/v1/admin/users/{user}/keys", {}), {404}, "not_found")
        # too long for the path parameter
        assert_error(await client.send("GET", f"/api/v1/markets/{'M' * 65}/candles"), {422}, "invalid_request")


async def test_wrong_json_bodies(running_api: RunningApi, own_admin: str) -> None:
    async with _client(running_api, own_admin) as client:
        tag = secrets.token_hex(3)
        create = "/api/v1/admin/users"
        keys = f"/api/v1/admin/users/errors-{tag}/keys"
        change = f"/api/v1/admin/users/errors-{tag}"
        assert (await client.json("POST", create, {"username": f"errors-{tag}"}))[0] == 201
        not_json = [b"{", b"not json", b"\xff\xfe", b"", b"{\"username\": }", b"\x00", b"[1, 2", b"{'a': 1}"]
        for path, method in ((create, "POST"), (keys, "POST"), (change, "PATCH")):
            for raw in not_json:
                result = await client.send(method, path, body=raw, headers={"Content-Type": "application/json"})
                assert_error(result, {400, 422}, what=(path, raw))
            for value in ([], [1], "text", 5, None, True):
                assert_error(await client.json(method, path, value), {422}, "invalid_request", (path, value))
            # JSON sent as text/plain or form data is not a body this API takes
            assert_error(await client.send(method, path, body="username=x", headers={
                "Content-Type": "application/x-www-form-urlencoded"}), {400, 415, 422}, what=path)
        fresh = lambda: f"errors-{tag}-{secrets.token_hex(3)}"  # a new name per case: no 409
        bad_users = [{"username": 5}, {"username": None}, {"username": ["a"]}, {"username": {"a": 1}}, {},
                     {"username": ""}, {"username": "a" * 65}, {"username": "bad name"}, {"username": "a\x00"},
                     {"username": fresh(), "email": 5}, {"username": fresh(), "email": "a\x00@x"},
                     {"username": fresh(), "email": "e" * 255}, {"username": fresh(), "tier": "\x00"},
                     {"username": fresh(), "tier": ["pro"]}, {"username": fresh(), "tier": "gold"},
                     {"username": fresh(), "admin": True}, {"username": fresh(), "tier": "pro", "role": "admin"},
                     {"username": 10**30}]
        for value in bad_users:
            assert_error(await client.json("POST", create, value), {422}, what=value)
        bad_keys = [{"role": 5}, {"role": "root"}, {"role": "\x00"}, {"label": "a\x00"}, {"label": 7},
                    {"label": "l" * 201}, {"role": "user", "extra": 1}, {"role": None}]
        for value in bad_keys:
            assert_error(await client.json("POST", keys, value), {422}, what=value)
        bad_changes = [{"tier": 5}, {"tier": "\x00"}, {"tier": "gold"}, {"disabled": "yes"}, {"disabled": 2},
                       {"disabled": [True]}, {"tier": "pro", "username": "admin"}, {"disabled": True, "role": "admin"}]
        for value in bad_changes:
            assert_error(await client.json("PATCH", change, value), {422}, what=value)
        # lone surrogates as JSON escapes (json.dumps writes them as \ud800 with ensure_ascii)
        for path, method, value in ((create, "POST", {"username": fresh(), "email": "\ud800"}),
                                    (keys, "POST", {"label": "x\udfff"}), (change, "PATCH", {"tier": "\ud800"})):
            assert_error(await client.json(method, path, value), {422}, "invalid_text", (path, value))
        # nothing of the above created a user or changed ours
        _, _, text = await client.send("GET", "/api/v1/admin/users")
        users = {u["username"]: u for u in json.loads(text)["items"]}
        assert not [u for u in users if u.startswith(f"errors-{tag}-")]
        assert users[f"errors-{tag}"]["tier"] == "free" and not users[f"errors-{tag}"]["disabled"]


async def test_unknown_routes_and_methods_use_the_error_shape(running_api: RunningApi, own_admin: str) -> None:
    async with _client(running_api, own_admin) as client:
        for path in ("/nope", "/api/v1/nope", "/api/v2/signals", "/api/v1/signals/x/y", "/dashboard/nope.js"):
            assert_error(await client.send("GET", path), {404}, "not_found", path)
            assert_error(await client.send("GET", path, key=None), {404}, "not_found", path)
        for method, path in (("PUT", "/api/v1/signals"), ("DELETE", "/api/v1/markets"), ("POST", "/healthz"),
                             ("PATCH", "/api/v1/admin/keys/abcdef12"), ("GET", "/api/v1/admin/keys/abcdef12"),
                             ("PUT", "/api/v1/admin/users")):
            result = await client.send(method, path)
            assert_error(result, {405}, "method_not_allowed", (method, path))
            assert result[1].get("Allow"), (method, path)
        # without a key: 401 in the same shape, for every method
        for method, path in (("GET", "/api/v1/signals"), ("POST", "/api/v1/admin/users"),
                             ("PATCH", "/api/v1/admin/users/x"), ("DELETE", "/api/v1/admin/keys/abcdef12")):
            assert_error(await client.send(method, path, key=None), {401}, "unauthorized", (method, path))


async def test_unhandled_exceptions_become_a_logged_500_in_the_error_shape(caplog) -> None:
    """The last resort (never reached by the tests above): an exception no handler takes is logged
    and answered with a 500 in the error shape instead of the server's plain-text page."""
    from serve.api import _Guard

    async def broken(scope, receive, send):
        raise RuntimeError("boom")

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}
    scope = {"type": "http", "method": "GET", "path": "/x", "raw_path": b"/x", "query_string": b"key=secret"}
    with caplog.at_level(logging.ERROR, logger="serve.api"):
        await _Guard(broken)(scope, receive, send)
    assert sent[0]["status"] == 500
    assert json.loads(sent[1]["body"]) == {"error": {"code": "internal_error",
                                                     "message": "internal error; it has been logged"}}
    assert "boom" in caplog.text and "secret" not in caplog.text
