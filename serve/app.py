"""The HTTP API as a Ray Serve application, bound to 127.0.0.1 unless told otherwise.

Replicas read DATABASE_URL, REDIS_URL and the rest from their runtime environment, which
``start_api`` fills from the driver's settings, so secrets never travel as arguments.
"""

from __future__ import annotations

import os

from ray import serve

from serve.api import ApiSettings, create_app
from serve.ingress_mode import SERVE_MODES, use_serve_mode  # noqa: F401 - re-exported
from serve.sessions import SESSION_ENV

app = create_app()


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
@serve.ingress(app)
class ApiDeployment:
    """One API replica: FastAPI routes over a shared Postgres pool and Redis client."""


def start_api(settings: ApiSettings, host: str = "127.0.0.1", port: int = 8000, replicas: int = 1,
              cpus: float = 0.0, access_log: bool = True) -> str:
    """Run the API on Serve (Ray must be initialised) with ``replicas`` replicas of ``cpus`` logical CPUs
    each (0: they take none from the engine's share); returns its base URL."""
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "CRYPTO_INTEL_REDIS_NAMESPACE": settings.namespace,
           "CRYPTO_INTEL_CORS_ORIGINS": ",".join(settings.cors_origins),
           "CRYPTO_INTEL_DEFAULT_TIMEFRAME": settings.default_timeframe,
           # session lifetimes and login limits (serve/sessions.py), where the driver sets them
           **{k: v for k, v in os.environ.items() if k in SESSION_ENV},
           "CRYPTO_INTEL_HOT_READS": "1" if settings.hot_reads else "0",
           "CRYPTO_INTEL_HOT_SETTLE_S": repr(settings.hot_settle_s)}
    serve.start(http_options={"host": host, "port": port})
    deployment = ApiDeployment.options(num_replicas=replicas, logging_config={"enable_access_log": access_log},
                                       ray_actor_options={"num_cpus": cpus, "runtime_env": {"env_vars": env}})
    serve.run(deployment.bind(), name="api", route_prefix="/", blocking=False)
    return f"http://{host}:{port}"
