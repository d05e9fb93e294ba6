"""Reinforcement learning over the engine's features: the trading environment (registered with gymnasium as
``crypto_intel/Trading-v0`` on import), rewards, training jobs, evaluation and policy export."""

import gymnasium

ENV_ID = "crypto_intel/Trading-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="rl.env:TradingEnv")
