"""The trading environment: gymnasium and stable-baselines3 checks, the broker's books for the same actions,
seeded random windows, vectorised copies."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest

import rl
from engine.backtest.broker import simulate
from rl.env import orders_from_actions

CANDLES = str(Path(__file__).resolve().parents[1] / "data" / "candles" / "ADA_BTC-5m.feather")


def make(**kw):
    kw.setdefault("window_bars", 400)
    return gymnasium.make(rl.ENV_ID, candles=CANDLES, **kw)


@pytest.mark.parametrize("actions", ["3", "5"])
def test_the_env_passes_gymnasium_and_sb3_checks(actions: str) -> None:
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    env = make(actions=actions)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither checker may even warn
        gym_check(env.unwrapped, skip_render_check=True)
        sb3_check(env.unwrapped, warn=True)
    assert env.action_space.n == int(actions)
    assert env.observation_space.shape == (len(env.unwrapped.data.names) + 2,)


def _run(env, actions) -> tuple[list, list]:
    positions, equity = [], []
    for a in actions:
        obs, r, term, trunc, info = env.step(int(a))
        positions.append(obs[-2])
        equity.append(info["equity"])
        if term or trunc:
            break
    return positions, equity


@pytest.mark.parametrize("actions,reward", [("3", "pnl"), ("5", "differential_sharpe"), ("3", "drawdown")])
def test_a_fixed_action_sequence_books_what_the_backtest_broker_books(actions: str, reward: str) -> None:
    # 1 BTC of cash on ADA/BTC: trades of ~10% of a bar's volume, so volume slippage is felt but sane
    env = make(actions=actions, reward=reward, fee=0.001, slippage_bps=3.0, slippage_volume=0.01,
               size="equity:0.8", leverage=1.0, cash=1.0)
    u = env.unwrapped
    _, info = env.reset(seed=11)
    seq = np.random.default_rng(5).integers(0, int(actions), u.window)
    positions, equity = _run(env, seq)
    assert len(positions) == u.window  # the episode is the window
    bars, orders = u.episode_bars()
    assert np.array_equal(orders.side, orders_from_actions(seq, actions))
    led = simulate(bars, orders, u.settings)  # the same orders straight through the backtest broker
    mine = u.ledger()
    for part in ("fills", "trades", "equity"):
        a, b = getattr(led, part), getattr(mine, part)
        assert a.keys() == b.keys()
        for k in a:
            assert np.array_equal(a[k], b[k], equal_nan=True), (part, k)
    assert led.counters == mine.counters
    assert len(led.trades["pnl"]) > 20
    # PnL and fees: the env's final equity is the backtest's, fees paid are the ledger's
    assert equity[-1] == led.equity["equity"][-1]
    assert u.summary()["fees"] == pytest.approx(float(led.fills["fee"].sum()), rel=0, abs=1e-9)
    # equity after each step is the backtest's equity row of the next close (the last close also pays the
    # fee of closing the position, which the step before it has not paid yet)
    assert np.array_equal(np.array(equity[:-2]), led.equity["equity"][1:-1])
    # position path: the sign of what the fills at or before each bar's open leave held
    f = led.fills
    signed = np.where(f["reason"] == 4, 0.0, f["side"] * f["qty"])  # the end fill happens at the last close
    held = np.array([signed[f["ts"] <= t].sum() for t in bars.open_ts[1:]])
    expect = np.sign(np.round(held, 9))
    assert np.array_equal(np.array(positions[:-1]), expect.astype(np.float32))
    assert positions[-1] == 0.0  # closed at the episode's last close


def test_exit_actions_make_flat_in_long_short_mode() -> None:
    env = make(actions="3")
    env.reset(seed=3)
    obs, *_ = env.step(1)
    assert obs[-2] == 1.0
    obs, *_ = env.step(2)
    assert obs[-2] == -1.0  # reversed at one open
    obs, *_ = env.step(0)
    assert obs[-2] == 0.0 and env.unwrapped.position == 0.0
    env5 = make(actions="5")
    env5.reset(seed=3)
    assert env5.step(1)[0][-2] == 1.0
    assert env5.step(4)[0][-2] == 1.0  # exit short while long: nothing
    assert env5.step(2)[0][-2] == 0.0


def test_seeded_random_windows() -> None:
    env = make(window_bars=100)
    starts = [env.reset(seed=s)[1]["start"] for s in (1, 2, 3, 1)]
    assert starts[0] == starts[3] and len(set(starts[:3])) == 3
    u = env.unwrapped
    assert all(u.lo <= s <= u.hi - 100 for s in starts)
    held = make(window_bars=None, segment=(0.8, 1.0))
    _, info = held.reset(seed=0)
    assert info["start"] == held.unwrapped.lo and info["end"] == held.unwrapped.hi - 1


def test_vectorised_envs_sync_and_dummy() -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = gymnasium.make_vec(rl.ENV_ID, num_envs=3, vectorization_mode="sync", candles=CANDLES, window_bars=50)
    obs, info = venv.reset(seed=7)
    assert obs.shape == (3, venv.single_observation_space.shape[0])
    assert len(set(info["start"].tolist())) == 3
    for _ in range(120):  # past the window: copies reset themselves
        obs, r, term, trunc, info = venv.step(venv.action_space.sample())
    assert np.isfinite(obs).all() and r.shape == (3,)
    venv.close()
    dummy = DummyVecEnv([lambda: make(window_bars=50) for _ in range(2)])
    dummy.seed(1)
    o = dummy.reset()
    for _ in range(60):
        o, r, d, infos = dummy.step(np.array([1, 2]))
    assert o.shape == (2, dummy.observation_space.shape[0])
    dummy.close()


def test_bad_arguments_are_config_errors() -> None:
    from schemas.errors import ConfigError

    with pytest.raises(ConfigError):
        make(actions="4")
    with pytest.raises(ConfigError):
        make(reward="nope")
    with pytest.raises(ConfigError):
        make(reward="pnl", reward_params={"eta": 1})
    with pytest.raises(ConfigError):
        make(segment=(0.5, 0.4))
