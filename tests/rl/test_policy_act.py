"""Every algorithm rl train offers acts through the live loaders too (DQN has Q-values, not a distribution)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.cli import main

CANDLES = str(Path(__file__).resolve().parents[1] / "data" / "candles" / "ADA_BTC-5m.feather")


@pytest.mark.parametrize("algo", ["dqn", "a2c"])
def test_live_and_rl_loaders_act_alike(algo, tmp_path, capsys) -> None:
    from connectors.models.live import LivePolicy
    from connectors.models.registry import Registry
    from rl.policy import load

    reg = tmp_path / "models"
    assert main(["rl", "train", "--input", CANDLES, "--algo", algo, "--timesteps", "512", "--n-steps", "64",
                 "--registry", str(reg), "--promote", "--serial"]) == 0
    capsys.readouterr()
    info = Registry(reg).production("policy")
    live = LivePolicy(info)
    obs = live.prepare(np.random.default_rng(0).normal(0, 3, (16, len(live.obs_features) + live.extras)))
    a_live, p_live = live.act(obs)
    a_rl, p_rl = load(info.path).act(obs)
    assert np.array_equal(a_live, a_rl) and np.allclose(p_live, p_rl)
    assert p_live.shape == (16, 3) and np.allclose(p_live.sum(axis=1), 1, atol=1e-5)


def test_a_user_error_inside_a_ray_task_comes_out_as_itself(ray_local) -> None:
    import ray

    from app.ray_session import ray_session
    from schemas.errors import ConfigError

    @ray.remote(num_cpus=0)
    def task():
        raise ConfigError("only 1 bar after warm-up; give more data")

    with pytest.raises(ConfigError, match="give more data") as e:  # not RayTaskError with the task's traceback
        with ray_session():
            ray.get(task.remote())
    assert type(e.value) is ConfigError and ray.is_initialized()  # the session's Ray is left running
