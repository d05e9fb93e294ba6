"""Reinforcement-learning environments and training jobs."""
