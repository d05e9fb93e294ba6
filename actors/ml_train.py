"""Training jobs (one per market, or one pooled) as Ray tasks, or serially in this process: each fits
XGBoost with fixed seed and thread count, so both ways give byte-identical models and equal metrics.

Every job's arrays go into the object store once; a task asks for ``num_cpus`` logical CPUs (fractional
allowed, default ``spec.nthread``) so a small machine runs as many jobs at once as it has cores.
"""

from __future__ import annotations

from typing import Callable

import ray

from engine.models import xgb
from engine.models.train import JobResult, TrainJob, run_job


def train_one(job: TrainJob, progress: Callable[[int], None] | None = None) -> JobResult:
    """One job to its result, the final booster serialised (``result.model``)."""
    result = run_job(job, xgb.train, progress)
    result.model = xgb.to_bytes(result.booster)
    result.booster = None
    return result


@ray.remote
def _train_task(job: TrainJob) -> JobResult:
    return train_one(job)


def train_serial(jobs: list[TrainJob], progress: Callable[[int], None] | None = None) -> list[JobResult]:
    """Every job in this process, in order."""
    return [train_one(j, progress) for j in jobs]


def train_on_ray(jobs: list[TrainJob], num_cpus: float | None = None,
                 progress: Callable[[int], None] | None = None) -> list[JobResult]:
    """Every job as a Ray task on the connected cluster, results in job order; ``progress(n)`` as each
    job finishes (n = the models it fitted: folds + 1)."""
    refs = []
    for j in jobs:
        cpus = float(j.spec.nthread if num_cpus is None else num_cpus)
        refs.append(_train_task.options(num_cpus=cpus).remote(ray.put(j)))
    index = {r: i for i, r in enumerate(refs)}
    results: list[JobResult | None] = [None] * len(refs)
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            i = index[ref]
            results[i] = ray.get(ref)
            if progress:
                progress(jobs[i].folds + 1)
    return results  # type: ignore[return-value]
