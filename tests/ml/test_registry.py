"""The model registry: versions, promotion and rollback, atomic writes, clear errors, the Postgres mirror."""

from __future__ import annotations

import asyncio
import json
import os
import threading

import pytest

from connectors.models.pg import read_models
from connectors.models.registry import (NothingToRollBackError, Registry, RegistryError, UnknownModelError,
                                        default_root)
from schemas.errors import CryptoIntelError
from tests.storage.pg_fixtures import pg_db, pg_url  # noqa: F401 - fixtures


def _register(reg: Registry, name: str = "xgb", payload: bytes = b"model", **kw):
    args = dict(kind="xgboost", files={"model.ubj": payload}, metrics={"held_out": {"auc": 0.51}},
                features=["ret_1", "rsi"], window={"start_ts": 1, "end_ts": 2}, data_hash="ab" * 32,
                params={"timeframe": "5m", "label": {"kind": "sign", "horizon": 12}})
    args.update(kw)
    return reg.register(name=name, **args)


def test_register_list_get(tmp_path) -> None:
    reg = Registry(tmp_path)
    a = _register(reg, payload=b"one")
    b = _register(reg, payload=b"two", metrics={"held_out": {"auc": float("nan")}})
    assert (a.version, b.version) == ("v1", "v2")
    assert a.stage == "candidate" and a.kind == "xgboost" and a.features == ["ret_1", "rsi"]
    assert (a.path / "model.ubj").read_bytes() == b"one"
    assert reg.path("xgb", "v2") == tmp_path / "xgb" / "v2"
    assert b.metrics == {"held_out": {"auc": None}}  # NaN stored as null: meta.json is strict JSON
    meta = json.loads((b.path / "meta.json").read_text())
    assert meta["version"] == "v2" and meta["data_hash"] == "ab" * 32 and meta["window"] == {"start_ts": 1, "end_ts": 2}
    assert [i.version for i in reg.list()] == ["v1", "v2"]
    _register(reg, "policy", kind="rl_policy", files={"policy.zip": b"zip"})
    assert [(i.name, i.version) for i in reg.list()] == [("policy", "v1"), ("xgb", "v1"), ("xgb", "v2")]
    assert reg.get("xgb", "v1").created_at.endswith("Z")
    assert reg.production("xgb") is None


def test_versions_sort_by_number(tmp_path) -> None:
    reg = Registry(tmp_path)
    for _ in range(11):
        _register(reg)
    assert [i.version for i in reg.list("xgb")][-3:] == ["v9", "v10", "v11"]
    assert reg.latest("xgb").version == "v11"


def test_promote_and_roll_back_walk_the_history(tmp_path) -> None:
    reg = Registry(tmp_path)
    for _ in range(3):
        _register(reg)
    with pytest.raises(NothingToRollBackError, match="no promoted version"):
        reg.rollback("xgb")
    assert reg.promote("xgb", "v1").stage == "production"
    with pytest.raises(NothingToRollBackError, match="first promoted"):
        reg.rollback("xgb")
    reg.promote("xgb", "v2")
    reg.promote("xgb", "v2")  # already in production: no new history entry
    reg.promote("xgb", "v3")
    assert (tmp_path / "xgb" / "PRODUCTION").read_text() == "v3\n"
    assert {i.version: i.stage for i in reg.list("xgb")} == {"v1": "archived", "v2": "archived", "v3": "production"}
    assert reg.rollback("xgb").version == "v2"
    assert reg.production("xgb").version == "v2"
    assert reg.rollback("xgb").version == "v1"
    with pytest.raises(NothingToRollBackError):
        reg.rollback("xgb")
    assert [e["action"] for e in reg.history("xgb")] == ["promote", "promote", "promote", "rollback", "rollback"]
    reg.promote("xgb", "v3")
    assert reg.rollback("xgb").version == "v1"  # back to what was live before v3


def test_clear_errors(tmp_path) -> None:
    reg = Registry(tmp_path)
    with pytest.raises(UnknownModelError, match="no model named 'xgb'"):
        reg.promote("xgb", "v1")
    _register(reg)
    with pytest.raises(UnknownModelError, match=r"no version 'v7' \(versions: v1\)"):
        reg.get("xgb", "v7")
    with pytest.raises(UnknownModelError):
        reg.list("nope")
    with pytest.raises(RegistryError, match="model name"):
        _register(reg, "../escape")
    with pytest.raises(RegistryError, match="artefact file name"):
        _register(reg, files={"../x": b""})
    with pytest.raises(RegistryError, match="kind"):
        _register(reg, kind="torch")
    with pytest.raises(RegistryError, match="no such file"):
        _register(reg, files={"model.ubj": tmp_path / "missing.ubj"})
    assert issubclass(UnknownModelError, CryptoIntelError) and issubclass(NothingToRollBackError, CryptoIntelError)


def test_files_are_copied_from_paths(tmp_path) -> None:
    src = tmp_path / "m.ubj"
    src.write_bytes(b"\x00\x01booster")
    info = _register(Registry(tmp_path / "reg"), files={"model.ubj": src})
    assert (info.path / "model.ubj").read_bytes() == b"\x00\x01booster"


def test_a_failed_register_leaves_nothing(tmp_path, monkeypatch) -> None:
    reg = Registry(tmp_path)
    _register(reg)

    def broken(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "rename", broken)
    with pytest.raises(OSError, match="disk full"):
        _register(reg)
    monkeypatch.undo()
    assert [i.version for i in reg.list("xgb")] == ["v1"]
    assert sorted(p.name for p in (tmp_path / "xgb").iterdir()) == [".lock", "v1"]  # no half-written version
    assert _register(reg).version == "v2"


def test_production_is_replaced_atomically(tmp_path) -> None:
    """A reader polling ``production()`` while versions are promoted back and forth only ever sees a
    whole version."""
    reg = Registry(tmp_path)
    for _ in range(2):
        _register(reg)
    reg.promote("xgb", "v1")
    seen, stop = set(), threading.Event()

    def poll():
        r = Registry(tmp_path)
        while not stop.is_set():
            seen.add(r.production_version("xgb"))

    t = threading.Thread(target=poll)
    t.start()
    for i in range(200):
        reg.promote("xgb", "v2" if i % 2 == 0 else "v1")
    stop.set()
    t.join()
    assert seen <= {"v1", "v2"} and seen
    assert not [p for p in (tmp_path / "xgb").iterdir() if p.name.endswith(".tmp")]


def test_concurrent_registers_get_distinct_versions(tmp_path) -> None:
    errors = []

    def worker(i):
        try:
            _register(Registry(tmp_path), payload=str(i).encode())
        except Exception as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    infos = Registry(tmp_path).list("xgb")
    assert [i.version for i in infos] == [f"v{n}" for n in range(1, 9)]
    assert sorted((i.path / "model.ubj").read_bytes() for i in infos) == sorted(str(i).encode() for i in range(8))


def test_default_root_follows_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("CRYPTO_INTEL_MODELS_DIR", raising=False)
    assert str(default_root()) == os.path.join("data", "models")
    monkeypatch.setenv("CRYPTO_INTEL_MODELS_DIR", str(tmp_path))
    assert default_root() == tmp_path and Registry().root == tmp_path


async def _rows(url: str, name: str | None = None) -> list[dict]:
    import asyncpg
    conn = await asyncpg.connect(url)
    try:
        return await read_models(conn, name)
    finally:
        await conn.close()


def test_the_models_table_mirrors_the_files(tmp_path, pg_db) -> None:  # noqa: F811
    reg = Registry(tmp_path, database_url=pg_db)
    a = _register(reg)
    _register(reg)
    rows = asyncio.run(_rows(pg_db))
    assert [(r["name"], r["version"], r["stage"]) for r in rows] == [("xgb", "v1", "candidate"),
                                                                      ("xgb", "v2", "candidate")]
    r = rows[0]
    assert r["kind"] == "xgboost" and r["features"] == ["ret_1", "rsi"] and r["data_hash"] == "ab" * 32
    assert (r["window_start"], r["window_end"]) == (1, 2) and r["metrics"] == {"held_out": {"auc": 0.51}}
    assert r["uri"] == a.path.resolve().as_uri() and r["params"]["timeframe"] == "5m"
    reg.promote("xgb", "v1")
    reg.promote("xgb", "v2")
    assert [r["stage"] for r in asyncio.run(_rows(pg_db, "xgb"))] == ["archived", "production"]
    reg.rollback("xgb")
    assert [r["stage"] for r in asyncio.run(_rows(pg_db, "xgb"))] == ["production", "archived"]
    # the files are the truth: a fresh table is rebuilt from them
    asyncio.run(_exec(pg_db, "DELETE FROM models"))
    assert Registry(tmp_path, database_url=pg_db).sync() == 2
    assert [r["stage"] for r in asyncio.run(_rows(pg_db, "xgb"))] == ["production", "archived"]


async def _exec(url: str, sql: str) -> None:
    import asyncpg
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def test_an_unreachable_database_is_one_clear_error(tmp_path) -> None:
    reg = Registry(tmp_path, database_url="postgresql://nobody@127.0.0.1:9/none")
    with pytest.raises(RegistryError, match="DATABASE_URL: cannot mirror xgb"):
        _register(reg)
    assert [i.version for i in Registry(tmp_path).list("xgb")] == ["v1"]  # the files were written first
