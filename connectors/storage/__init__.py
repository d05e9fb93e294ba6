"""Durable and shared storage: Redis (live feed, checkpoints, latest state, rate limits) and Postgres."""
