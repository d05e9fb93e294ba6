"""The main job's first models: on an empty registry a small XGBoost model and PPO policy are trained on the
bundled sample, promoted and mirrored into the models table; on a registry that has them nothing is retrained."""

from __future__ import annotations

import asyncio

import asyncpg

from app.models_bootstrap import ensure_models
from connectors.models.registry import Registry
from tests.storage.pg_fixtures import pg_db, pg_migrated, pg_url  # noqa: F401 - fixtures


def test_an_empty_registry_gets_a_model_and_a_policy_once(tmp_path, pg_migrated) -> None:  # noqa: F811
    said: list[str] = []
    root = tmp_path / "models"
    ensure_models(root, said.append, pg_migrated)
    reg = Registry(root)
    assert reg.production_version("xgb") == "v1" and reg.production_version("policy") == "v1"
    assert any("training a small xgb model" in s for s in said) and any("PPO" in s for s in said)

    async def rows() -> list:
        c = await asyncpg.connect(pg_migrated)
        try:
            return [tuple(r) for r in await c.fetch("SELECT name, version, kind, stage FROM models ORDER BY name")]
        finally:
            await c.close()
    assert asyncio.run(rows()) == [("policy", "v1", "rl_policy", "production"), ("xgb", "v1", "xgboost", "production")]
    said.clear()
    ensure_models(root, said.append, pg_migrated)
    assert not said and [i.version for i in reg.list()] == ["v1", "v1"]  # nothing retrained


def test_a_registry_that_cannot_be_written_leaves_the_job_running_without_models(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    said: list[str] = []
    ensure_models(blocker / "models", said.append)  # no exception: the job goes on
    assert [s for s in said if "not trained" in s and "serving none" in s][:2] and len(said) == 4
