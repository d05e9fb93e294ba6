"""End to end at CI size: PPO trained as a Ray task on real bars, checkpointed and resumed, evaluated on the
held-out window against buy and hold, random actions and the rule strategies, registered and loaded back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.cli import main

CANDLES = str(Path(__file__).resolve().parents[1] / "data" / "candles" / "ADA_BTC-5m.feather")


def test_ppo_trains_on_ray_evaluates_registers_and_resumes(ray_local, tmp_path, capsys) -> None:
    from connectors.models.registry import Registry
    from rl.policy import load

    reg, ck = tmp_path / "models", tmp_path / "ck"
    common = ["rl", "train", "--input", CANDLES, "--algo", "ppo", "--registry", str(reg), "--checkpoint-dir", str(ck),
              "--checkpoint-every", "1024", "--n-envs", "2", "--n-steps", "256", "--window-bars", "256"]
    assert main(common + ["--timesteps", "2048", "--promote"]) == 0
    out = capsys.readouterr()
    assert "rl train" in out.err  # progress from the Ray task reaches the driver's stderr
    for row in ("policy (ppo)", "buy_and_hold", "random (mean of 5)", "rule:default", "rule:sma_cross"):
        assert row in out.out
    info = Registry(reg).production("policy")
    assert info is not None and info.kind == "rl_policy" and info.version == "v1"
    assert info.params["algo"] == "ppo" and info.params["actions"] == "3"
    obs_meta = info.params["observation"]
    assert obs_meta["position"] and obs_meta["pnl"] and obs_meta["window"] == 1
    held = info.metrics["held_out"]
    names = [r["name"] for r in held["rows"]]
    assert names[:2] == ["policy (ppo)", "buy_and_hold"] and held["window"]["bars"] > 500
    assert info.window["end_ts"] <= held["window"]["start_ts"]  # trained on bars closed before the held-out ones
    assert sorted(p.name for p in ck.glob("rl_model_*_steps.zip"))  # checkpoints were written
    policy = load(info.path)
    obs = np.zeros((4, len(obs_meta["features"]) + 2), np.float32)
    actions, probs = policy.act(obs)
    assert actions.shape == (4,) and probs.shape == (4, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)

    # resume: continue from the last checkpoint up to 3,072 steps in all
    assert main(common + ["--timesteps", "3072", "--resume"]) == 0
    out = capsys.readouterr()
    assert "resumed from rl_model_2048_steps.zip" in out.err
    v2 = Registry(reg).get("policy", "v2")
    assert v2.metrics["timesteps"] == 3072

    assert main(["rl", "evaluate", "--input", CANDLES, "--registry", str(reg), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"][0]["name"] == "policy v1"  # the production version
    assert report["rows"][0] == {**held["rows"][0], "name": "policy v1"}  # the same numbers as at training


def test_cli_errors_are_one_line(tmp_path, capsys) -> None:
    assert main(["rl", "train", "--input", str(tmp_path / "nope.feather")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["rl", "train", "--input", CANDLES, "--reward", "nope", "--serial"]) == 2
    assert "unknown reward" in capsys.readouterr().err
    assert main(["rl", "train", "--input", CANDLES, "--resume", "--serial"]) == 2
    assert "--checkpoint-dir" in capsys.readouterr().err
    assert main(["rl", "evaluate", "--input", CANDLES, "--registry", str(tmp_path / "empty")]) == 2
    assert "rl train first" in capsys.readouterr().err
