"""Models for the main job: on an empty registry, small ones trained on the bundled sample (so a newcomer sees
``/ml/v1/predict`` and ``/rl/v1/act`` answer), then the promoted versions deployed next to the API."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Callable

from schemas.errors import CryptoIntelError

# small and quick: about a minute in all on a 2-core laptop, progress on stderr
XGB_ARGS = ["--rounds", "60", "--folds", "2", "--serial"]
RL_TIMESTEPS = "4096"


def _candle_paths() -> list[str]:
    from engine.sources.sample import sample_paths
    return [str(p) for p in sample_paths() if str(p).endswith(".feather")]


def _cli(argv: list[str], database_url: str | None) -> None:
    from app.cli import build_parser
    args = build_parser().parse_args(argv)
    before = os.environ.get("DATABASE_URL")
    if database_url:  # the commands mirror the registry into this database's models table
        os.environ["DATABASE_URL"] = database_url
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the job's own stdout stays quiet
            args.func(args)
    finally:
        if before is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = before


def ensure_models(root: Path, say: Callable[[str], None], database_url: str | None = None) -> None:
    """Train and promote the default model and policy where the registry has no production version (into
    the ``models`` table of ``database_url`` too)."""
    from connectors.models.registry import Registry

    reg = Registry(root)
    paths = _candle_paths()
    jobs = [("xgb", "a small xgb model", ["ml", "train", "--input", *paths, "--registry", str(root), "--promote",
                                          *XGB_ARGS]),
            ("policy", "a small PPO policy", ["rl", "train", "--input", paths[0], "--algo", "ppo", "--timesteps",
                                              RL_TIMESTEPS, "--registry", str(root), "--promote", "--serial"])]
    for name, what, argv in jobs:
        if reg.production_version(name) is not None:
            continue
        say(f"model registry {root} has no promoted {name}: training {what} on the bundled sample ...")
        t0 = time.perf_counter()
        try:
            _cli(argv, database_url)
        except (CryptoIntelError, OSError) as e:  # the job goes on; the route answers 503 until one is promoted
            say(f"{name}: not trained ({e}); serving none until one is promoted")
            continue
        say(f"{name} trained and promoted in {time.perf_counter() - t0:.0f}s")


def serve_models(root: Path, say: Callable[[str], None]) -> list[str]:
    """Deploy the promoted model and policy (Serve must be up); lines to print."""
    from serve.models import deploy_models

    versions = deploy_models(root)
    return [f"models: xgb {versions.get('xgb') or 'none'} at POST /ml/v1/predict, policy "
            f"{versions.get('policy') or 'none'} at POST /rl/v1/act (promote another with crypto-intel ml promote; "
            f"the deployments follow it)"]
