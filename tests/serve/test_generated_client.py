"""A Python client generated (openapi-python-client) from the app's own OpenAPI document at test time,
used against the running API: its typed results carry the same data as the raw HTTP answers, errors
come back as the modelled ErrorBody, and the admin flow (create a user, issue a key, use it) works."""

from __future__ import annotations

import importlib
import json
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from serve.openapi import CLIENT_PACKAGE
from tests.serve.api_fixtures import RunningApi

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def gen(tmp_path_factory) -> Iterator[ModuleType]:
    """The generated package, importable for this module only."""
    from serve.api import create_app
    from serve.openapi import generate_client
    out = generate_client(create_app().openapi(), tmp_path_factory.mktemp("client"))
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(CLIENT_PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [n for n in sys.modules if n == CLIENT_PACKAGE or n.startswith(CLIENT_PACKAGE + ".")]:
            del sys.modules[name]


def _ops(name: str) -> ModuleType:
    """An operation module of the generated client, e.g. ``signals.list_signals``."""
    return importlib.import_module(f"{CLIENT_PACKAGE}.api.{name}")


def _raw(api: RunningApi, path: str, key: str | None) -> tuple[int, Any]:
    req = urllib.request.Request(api.url + path, headers={"X-API-Key": key} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


@pytest.fixture(scope="module")
def client(gen: ModuleType, running_api: RunningApi):
    c = gen.AuthenticatedClient(base_url=running_api.url, token=running_api.keys["admin"],
                                raise_on_unexpected_status=True, timeout=30.0)
    with c:
        yield c


def test_the_client_matches_the_served_document(running_api: RunningApi) -> None:
    from serve.api import create_app
    status, served = _raw(running_api, "/openapi.json", None)
    assert status == 200 and served == json.loads(json.dumps(create_app().openapi()))


def test_list_signals_pages_and_round_trips(gen: ModuleType, client, running_api: RunningApi) -> None:
    list_signals = _ops("signals.list_signals")
    first = list_signals.sync(client=client, limit=3)
    assert isinstance(first, gen.models.SignalPage), first
    assert len(first.items) == 3 and isinstance(first.next_cursor, str)
    assert all(isinstance(s, gen.models.Signal) for s in first.items)
    assert first.items[0].side in set(gen.models.Side)
    status, raw = _raw(running_api, "/api/v1/signals?limit=3", running_api.keys["admin"])
    assert status == 200 and first.to_dict() == raw
    second = list_signals.sync(client=client, limit=3, cursor=first.next_cursor)
    status, raw2 = _raw(running_api, f"/api/v1/signals?limit=3&cursor={first.next_cursor}", running_api.keys["admin"])
    assert status == 200 and second.to_dict() == raw2
    assert not {s.id for s in first.items} & {s.id for s in second.items}
    assert (first.items[-1].ts, first.items[-1].id) < (second.items[0].ts, second.items[0].id)


def test_get_signal_round_trips(gen: ModuleType, client, running_api: RunningApi) -> None:
    sid = running_api.signal_ids[0]
    got = _ops("signals.get_signal").sync(signal_id=sid, client=client)
    assert isinstance(got, gen.models.SignalItem) and got.item.id == sid
    status, raw = _raw(running_api, f"/api/v1/signals/{sid}", running_api.keys["admin"])
    assert status == 200 and got.to_dict() == raw
    # the typed record reads back from its own dict unchanged
    assert gen.models.Signal.from_dict(got.item.to_dict()).to_dict() == raw["item"]


def test_candles_and_market_summary_round_trip(gen: ModuleType, client, running_api: RunningApi) -> None:
    market = running_api.markets[0]
    candles = _ops("markets.list_candles").sync(symbol=market, client=client, tf="5m", limit=20)
    assert isinstance(candles, gen.models.CandlePage) and len(candles.items) == 20
    status, raw = _raw(running_api, f"/api/v1/markets/{market}/candles?tf=5m&limit=20", running_api.keys["admin"])
    assert status == 200 and candles.to_dict() == raw
    assert all(c.market == market and c.timeframe == "5m" for c in candles.items)
    summary = _ops("markets.list_market_summaries").sync(client=client, tf="5m", market=market)
    assert isinstance(summary, gen.models.MarketSummaryPage) and [s.market for s in summary.items] == [market]
    status, raw = _raw(running_api, f"/api/v1/market/summary?tf=5m&market={market}", running_api.keys["admin"])
    assert status == 200 and summary.to_dict() == raw
    markets = _ops("markets.list_markets").sync(client=client)
    assert set(running_api.markets) <= {m.market for m in markets.items}


def test_admin_creates_a_user_and_issues_a_key_that_works(gen: ModuleType, client, running_api: RunningApi) -> None:
    name = f"gen-{secrets.token_hex(3)}"
    made = _ops("admin.create_user").sync_detailed(client=client, body=gen.models.NewUser(username=name, tier="pro"))
    assert made.status_code == 201 and isinstance(made.parsed, gen.models.UserItem), made
    assert (made.parsed.item.username, made.parsed.item.tier, made.parsed.item.disabled) == (name, "pro", False)
    issued = _ops("admin.issue_key").sync_detailed(username=name, client=client,
                                                   body=gen.models.NewKey(role="user", label="generated client"))
    assert issued.status_code == 201 and isinstance(issued.parsed, gen.models.IssuedKeyItem), issued
    key = issued.parsed.item.key
    assert issued.parsed.item.username == name and key_id_of(key) == issued.parsed.item.key_id
    users = _ops("admin.list_users").sync(client=client)
    assert any(u.username == name and u.active_keys == 1 for u in users.items)
    again = _ops("admin.create_user").sync_detailed(client=client, body=gen.models.NewUser(username=name))
    assert again.status_code == 409 and again.parsed.error.code == "conflict"
    with gen.AuthenticatedClient(base_url=running_api.url, token=key) as as_user:
        page = _ops("signals.list_signals").sync(client=as_user, limit=1)
        assert isinstance(page, gen.models.SignalPage) and len(page.items) == 1
        # a user key on an admin route: the modelled 403
        denied = _ops("admin.list_users").sync_detailed(client=as_user)
        assert denied.status_code == 403 and isinstance(denied.parsed, gen.models.ErrorBody)
        assert denied.parsed.error.code == "forbidden"


def key_id_of(key: str) -> str:
    from serve.keys import key_id
    return key_id(key)


def test_errors_come_back_as_the_modelled_error_body(gen: ModuleType, client, running_api: RunningApi) -> None:
    missing = _ops("signals.get_signal").sync_detailed(signal_id="no-such-signal", client=client)
    assert missing.status_code == 404 and isinstance(missing.parsed, gen.models.ErrorBody)
    status, raw = _raw(running_api, "/api/v1/signals/no-such-signal", running_api.keys["admin"])
    assert status == 404 and missing.parsed.to_dict() == raw and raw["error"]["code"] == "not_found"
    bad = _ops("signals.list_signals").sync_detailed(client=client, cursor="not-a-cursor")
    assert bad.status_code == 422 and bad.parsed.error.code == "invalid_cursor"
    with gen.Client(base_url=running_api.url) as anonymous:
        # the generated functions take an AuthenticatedClient; a plain one shows the 401 answer
        unauth = _ops("signals.list_signals").sync_detailed(client=anonymous)
        assert unauth.status_code == 401 and unauth.parsed.error.code == "unauthorized"
        health = _ops("health.get_health").sync(client=anonymous)
        assert isinstance(health, gen.models.Health) and health.status == "ok"
