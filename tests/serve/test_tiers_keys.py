"""The pure parts: tier table and validation, key format, ids, comparison and redaction."""

from __future__ import annotations

import re

import pytest

from schemas.errors import ConfigError, CryptoIntelError
from serve.keys import constant_time_equal, hash_key, key_id, new_api_key, redact
from serve.tiers import (
    CHANNEL_KINDS,
    ROLES,
    TIERS,
    Tier,
    UnknownRoleError,
    UnknownTierError,
    check_role,
    tier,
)


def test_tiers_grow_from_free_to_enterprise() -> None:
    free, pro, ent = tier("free"), tier("pro"), tier("enterprise")
    assert free.channels < pro.channels < ent.channels == CHANNEL_KINDS
    assert free.rate_per_s < pro.rate_per_s < ent.rate_per_s and free.burst < pro.burst < ent.burst
    assert free.max_markets < pro.max_markets and ent.max_markets is None and ent.allows_markets(10**6)
    assert free.history_days < pro.history_days < ent.history_days
    assert free.max_ws_connections < pro.max_ws_connections < ent.max_ws_connections
    assert all(name == t.name for name, t in TIERS.items()) and ROLES == ("admin", "user")


def test_unknown_names_are_clear_errors() -> None:
    with pytest.raises(UnknownTierError, match="'gold'.*free, pro, enterprise") as e:
        tier("gold")
    assert isinstance(e.value, CryptoIntelError)
    with pytest.raises(UnknownRoleError, match="admin, user"):
        check_role("root")


@pytest.mark.parametrize("kw", [dict(rate_per_s=0), dict(burst=0), dict(channels=frozenset({"gossip"})),
                                dict(name="Bad Name"), dict(max_markets=0)])
def test_tier_validation(kw: dict) -> None:
    base = dict(name="t", rate_per_s=1.0, burst=1, channels=frozenset({"candles"}), max_markets=None,
                history_days=1, max_ws_connections=1)
    with pytest.raises(ConfigError):
        Tier(**{**base, **kw})


def test_keys() -> None:
    keys = {new_api_key() for _ in range(100)}
    assert len(keys) == 100 and all(re.fullmatch(r"ci_[A-Za-z0-9_\-]{43}", k) for k in keys)
    k = keys.pop()
    assert re.fullmatch(r"[0-9a-f]{64}", hash_key(k)) and key_id(k) == hash_key(k)[:8]
    assert constant_time_equal(hash_key(k), hash_key(k)) and not constant_time_equal(hash_key(k), hash_key(k + "x"))
    assert redact(f"[{k}]") == "[ci_***]" and redact("no keys here, ci_x") == "no keys here, ci_x"


def test_redact_removes_keys() -> None:
    key = new_api_key()
    line = f"GET /v1/signals?api_key={key} auth='Bearer {key}' user=ci_admin id={key_id(key)}"
    out = redact(line)
    assert key not in out and key[3:] not in out
    assert out.count("ci_***") == 2 and "user=ci_admin" in out and key_id(key) in out
