"""A sweep's tasks as Ray tasks: each market's history goes into the object store once, tasks run in
chunks (a backtest of a few thousand bars takes milliseconds, less than a task's own overhead), and rows
come back in task order, so the table equals a serial run's."""

from __future__ import annotations

from typing import Callable

import ray

from engine.backtest.settings import BacktestSettings
from engine.backtest.sweep import Task, run_task


@ray.remote
def _run_chunk(tasks: list[Task], input_refs: dict, strategy: str, settings: BacktestSettings,
               timeframe: str | None, engine: str) -> list[dict]:
    inputs = {m: ray.get(ref) for m, ref in input_refs.items()}  # refs nested in a dict are not resolved for us
    return [run_task(t, inputs[t.market], strategy, settings, timeframe, engine) for t in tasks]


def run_serial(tasks: list[Task], inputs_by_market: dict, strategy: str, settings: BacktestSettings,
               timeframe: str | None, engine: str, progress: Callable[[int], None] | None = None) -> list[dict]:
    rows = []
    for t in tasks:
        rows.append(run_task(t, inputs_by_market[t.market], strategy, settings, timeframe, engine))
        if progress:
            progress(1)
    return rows


def run_on_ray(tasks: list[Task], inputs_by_market: dict, strategy: str, settings: BacktestSettings,
               timeframe: str | None, engine: str, progress: Callable[[int], None] | None = None,
               chunk: int | None = None) -> list[dict]:
    """Every task on the connected Ray cluster; ``progress(n)`` as chunks finish."""
    if not tasks:
        return []
    cpus = max(int(ray.cluster_resources().get("CPU", 1)), 1)
    chunk = chunk or max(1, min(50, len(tasks) // (4 * cpus) or 1))
    # one object per market, shared by every chunk that reads it
    refs = {m: ray.put(v) for m, v in inputs_by_market.items()}
    pending = {}
    for i in range(0, len(tasks), chunk):
        part = tasks[i:i + chunk]
        needed = {t.market for t in part}
        ref = _run_chunk.remote(part, {m: refs[m] for m in needed}, strategy, settings, timeframe, engine)
        pending[ref] = i
    results: dict[int, list[dict]] = {}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            i = pending.pop(ref)
            results[i] = ray.get(ref)
            if progress:
                progress(len(results[i]))
    return [row for i in sorted(results) for row in results[i]]
