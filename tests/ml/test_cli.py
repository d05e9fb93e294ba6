"""`crypto-intel ml`: train on real bars (serially and as Ray tasks), list, promote, roll back, the
models table when DATABASE_URL is set, and one-line errors with exit code 2."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from tests.data_paths import REPO, SHARED_DATA
from tests.storage.pg_fixtures import fetch, pg_db, pg_url  # noqa: F401 - fixtures

CANDLES = [str(SHARED_DATA / "candles" / f) for f in ("ADA_BTC-5m.feather", "ZEC_BTC-5m.feather")]
FAST = ["--rounds", "20", "--folds", "2"]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CRYPTO_INTEL_MODELS_DIR")}
    return subprocess.run([sys.executable, "-m", "app.cli", "ml", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**base, **(env or {})})


def test_train_list_promote_rollback(tmp_path) -> None:
    reg = str(tmp_path / "models")
    p = _cli("train", "--input", *CANDLES, "--serial", "--registry", reg, "--promote", *FAST)
    assert p.returncode == 0, p.stderr
    assert "features [" in p.stderr and "train [" in p.stderr  # progress on stderr
    assert "xgb v1 (production)" in p.stdout and "AUC" in p.stdout and "calibration" in p.stdout
    assert "importance (gain)" in p.stdout and "holdout (the registered model" in p.stdout
    meta = json.loads((tmp_path / "models" / "xgb" / "v1" / "meta.json").read_text())
    assert meta["kind"] == "xgboost" and meta["params"]["timeframe"] == "5m"
    assert meta["params"]["label"] == {"kind": "sign", "horizon": 12} and meta["features"] == meta["params"]["features"]
    assert meta["params"]["markets"] == ["ADA_BTC", "ZEC_BTC"] and len(meta["data_hash"]) == 64
    assert set(meta["metrics"]["held_out"]) >= {"auc", "log_loss", "precision_top_decile", "calibration"}
    hold = meta["metrics"]["holdout"]
    assert hold["start_ts"] > meta["window"]["end_ts"] and 0.0 < hold["auc"] < 1.0 and len(hold["calibration"]) > 3
    assert len(meta["metrics"]["folds"]) == 2 and meta["window"]["start_ts"] < meta["window"]["end_ts"]
    assert (tmp_path / "models" / "xgb" / "v1" / "model.ubj").stat().st_size > 1000

    p = _cli("train", "--input", *CANDLES, "--serial", "--registry", reg, "--label", "triple-barrier",
             "--horizon", "6", "--embargo", "3", "--scheme", "kfold", *FAST)
    assert p.returncode == 0, p.stderr
    assert "xgb v2 (candidate)" in p.stdout and "embargoed 6" in p.stdout  # 3 bars x 2 markets

    p = _cli("list", "--registry", reg)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "VERSION", "KIND", "STAGE"]
    assert [ln.split()[:4] for ln in lines[1:]] == [["xgb", "v1", "xgboost", "production"],
                                                    ["xgb", "v2", "xgboost", "candidate"]]
    assert _cli("promote", "xgb", "v2", "--registry", reg).stdout.strip() == "xgb v2 is in production"
    assert (tmp_path / "models" / "xgb" / "PRODUCTION").read_text().strip() == "v2"
    assert _cli("rollback", "xgb", "--registry", reg).stdout.strip() == "xgb rolled back to v1"
    p = _cli("rollback", "xgb", "--registry", reg)
    assert p.returncode == 2 and p.stderr.strip() == ("crypto-intel ml rollback: error: nothing to roll back to: "
                                                      "xgb v1 is the first promoted version")


def test_per_market_training_on_ray(tmp_path) -> None:
    reg = tmp_path / "models"
    p = _cli("train", "--input", *CANDLES, "--per-market", "--task-cpus", "0.5", *FAST, env={
        "CRYPTO_INTEL_MODELS_DIR": str(reg)})
    assert p.returncode == 0, p.stderr
    assert "(ray)" in p.stderr
    assert "xgb-ADA_BTC v1 (candidate)" in p.stdout and "xgb-ZEC_BTC v1 (candidate)" in p.stdout
    assert json.loads((reg / "xgb-ADA_BTC" / "v1" / "meta.json").read_text())["params"]["markets"] == ["ADA_BTC"]


def test_the_models_table_is_written_when_database_url_is_set(tmp_path, pg_db) -> None:  # noqa: F811
    reg = str(tmp_path / "models")
    p = _cli("train", "--input", CANDLES[0], "--serial", "--registry", reg, *FAST, env={"DATABASE_URL": pg_db})
    assert p.returncode == 0, p.stderr
    assert _cli("promote", "xgb", "v1", "--registry", reg, env={"DATABASE_URL": pg_db}).returncode == 0
    rows = asyncio.run(fetch(pg_db, "SELECT name, version, kind, stage, data_hash, features FROM models"))
    assert [(r["name"], r["version"], r["kind"], r["stage"]) for r in rows] == [("xgb", "v1", "xgboost", "production")]
    assert len(rows[0]["data_hash"]) == 64 and "rsi" in rows[0]["features"]


@pytest.mark.parametrize("args,message", [
    (["train", "--input", "missing.feather"], "missing.feather"),
    (["train", "--input", CANDLES[0], "--folds", "0"], "--folds"),
    (["train", "--input", CANDLES[0], "--label", "up"], "--label"),
    (["train", "--input", CANDLES[0], "--horizon", "-2"], "--horizon"),
    (["train", "--input", CANDLES[0], "--embargo", "x"], "--embargo"),
    (["train", "--input", CANDLES[0], "--holdout", "1"], "--holdout"),
    (["train", "--input", CANDLES[0], "--serial", "--ray-address", "auto"], "exclude each other"),
    (["train", "--input", CANDLES[0], "--serial", "--folds", "100000"], "distinct bar times"),
    (["promote", "xgb", "v1"], "no model named 'xgb'"),
    (["rollback", "nope"], "no model named 'nope'"),
    (["list", "nope"], "no model named 'nope'"),
    (["promote", "bad/name", "v1"], "model name"),
    (["frobnicate"], "invalid choice"),
    (["train"], "--input"),
])
def test_bad_flags_exit_2_with_one_line(tmp_path, capsys, monkeypatch, args, message) -> None:
    from app.cli import main
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(REPO)
    code = main(["ml", *args, "--registry", str(tmp_path / "models")])
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err


def test_an_unwritable_registry_is_refused_before_any_training(tmp_path, capsys) -> None:
    from app.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    for argv in (["ml", "train", "--input", CANDLES[0], "--serial"], ["rl", "train", "--input", CANDLES[0], "--serial"]):
        assert main([*argv, "--registry", str(blocker / "models")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--registry" in err[0] and "cannot create it" in err[0], err
