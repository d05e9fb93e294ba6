"""Reward sweeps at CI size: a 2x2 grid over the reward and its scale on real bars, one Ray task per combination,
row for row the same as in-process; --promote-best registers only the best by held-out Sharpe; bad grids are
one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from rl.rewards import REWARDS, parameters
from rl.sweep import TRAIN_KEYS, parse_sweep_grid, rank
from schemas.errors import ConfigError

CANDLES = str(Path(__file__).resolve().parents[1] / "data" / "candles" / "ADA_BTC-5m.feather")
GRID = "reward=pnl,drawdown;scale=50,100"
SMALL = ["--input", CANDLES, "--timesteps", "512", "--n-envs", "2", "--n-steps", "128", "--window-bars", "256"]


def test_grid_combinations_follow_the_reward_registry() -> None:
    combos = parse_sweep_grid(GRID)
    assert [(c.reward, c.reward_params) for c in combos] == [
        ("pnl", {"scale": 50.0}), ("pnl", {"scale": 100.0}), ("drawdown", {"scale": 50.0}),
        ("drawdown", {"scale": 100.0})]
    # a parameter applies only to the rewards that take it: pnl runs once, drawdown once per penalty
    combos = parse_sweep_grid("reward=pnl,drawdown;penalty=0.5,1.0")
    assert [c.label() for c in combos] == ["reward=pnl", "reward=drawdown penalty=0.5", "reward=drawdown penalty=1"]
    # the backtest grid's separators and ranges, aliases, training settings, the default reward
    combos = parse_sweep_grid("reward=dsr,eta=0.01,0.02,learning_rate=3e-4,1e-3")
    assert len(combos) == 4 and {c.reward for c in combos} == {"differential_sharpe"}
    assert combos[1].train == {"learning_rate": 1e-3}
    assert [c.train["seed"] for c in parse_sweep_grid("seed=0..2", default_reward="drawdown")] == [0, 1, 2]
    assert not set(TRAIN_KEYS) & {k for r in REWARDS for k in parameters(r)}


@pytest.mark.parametrize("grid, says", [
    ("reward=nope", "unknown reward"), ("reward=pnl;penalty=1", "penalty is not a parameter of pnl"),
    ("foo=1,2", "foo"), ("reward=pnl;scale=big", "not a number"), ("seed=0.5", "whole number"),
    ("learning_rate=0", "above 0"), ("reward=pnl,pnl", "repeats"), ("reward=pnl;;scale=1", "empty value"),
    ("pnl,drawdown", "start with name=values")])
def test_bad_grids_are_config_errors(grid, says) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_sweep_grid(grid)


def test_ranking_is_by_sharpe_then_return_with_missing_values_last() -> None:
    rows = [{"combo": 0, "sharpe": None, "total_return": 0.0}, {"combo": 1, "sharpe": 1.0, "total_return": 0.1},
            {"combo": 2, "sharpe": 1.0, "total_return": 0.2}, {"combo": 3, "sharpe": -2.0, "total_return": 0.5}]
    assert [(r["combo"], r["rank"]) for r in rank(rows)] == [(2, 1), (1, 2), (3, 3), (0, 4)]


def test_sweep_on_ray_equals_serial_and_promotes_the_best(ray_local, tmp_path, capsys) -> None:
    from connectors.models.registry import Registry

    assert main(["rl", "sweep", *SMALL, "--grid", GRID, "--task-cpus", "0.5", "--json"]) == 0
    out = capsys.readouterr()
    on_ray = json.loads(out.out)
    assert out.err.count("rl sweep ") == 4 and "rl sweep 4/4 done" in out.err  # one line per finished task
    assert on_ray["promoted"] is None

    reg = tmp_path / "models"
    assert main(["rl", "sweep", *SMALL, "--grid", GRID, "--serial", "--json", "--promote-best",
                 "--registry", str(reg)]) == 0
    serial = json.loads(capsys.readouterr().out)
    assert len(serial["rows"]) == 4 and serial["rows"] == on_ray["rows"]  # same seeds, same numbers, same order
    assert serial["window"] == on_ray["window"] and serial["window"]["bars"] > 500
    rows = serial["rows"]
    sharpes = [r["sharpe"] for r in rows if r["sharpe"] is not None]
    assert rows[0]["sharpe"] == max(sharpes) and [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert len({r["buy_and_hold_return"] for r in rows}) == 1  # one benchmark: the same window for every row
    assert {r["label"] for r in rows} == {"reward=pnl scale=50", "reward=pnl scale=100", "reward=drawdown scale=50",
                                          "reward=drawdown scale=100"}

    registry = Registry(reg)
    info = registry.production("policy")
    assert info is not None and info.version == "v1" and registry.latest("policy").version == "v1"  # only the best
    best = rows[0]
    assert info.params["reward"] == best["reward"] and info.params["reward_params"] == best["reward_params"]
    assert info.params["sweep"]["combination"] == best["label"] == serial["promoted"]["label"]
    assert info.metrics["held_out"]["rows"][0]["sharpe"] == best["sharpe"]

    # the text table: every combination, next to buy and hold
    assert main(["rl", "sweep", *SMALL, "--grid", "reward=drawdown;penalty=1", "--serial"]) == 0
    text = capsys.readouterr().out
    assert "reward=drawdown penalty=1" in text and "buy&hold" in text and "1 runs in" in text


@pytest.mark.parametrize("grid, says", [("reward=pnl;penalty=0.5,1", "penalty"), ("reward=nope", "unknown reward"),
                                        ("scale=x", "not a number"), ("n_steps=1", "at least 2")])
def test_bad_grid_exits_2_with_one_line(grid, says, capsys) -> None:
    assert main(["rl", "sweep", "--input", CANDLES, "--grid", grid, "--serial"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1
    assert out.err.startswith("crypto-intel rl sweep: error: --grid") and says in out.err


def test_sweep_flag_errors(tmp_path, capsys) -> None:
    assert main(["rl", "sweep", "--input", CANDLES, "--grid", GRID, "--serial", "--ray-address", "auto"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert main(["rl", "sweep", "--input", str(tmp_path / "nope.feather"), "--grid", GRID]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["rl", "sweep", "--input", CANDLES]) == 2  # --grid is required
    assert "--grid" in capsys.readouterr().err
