"""One running API for every test module of this folder (Serve binds one HTTP port per Ray instance)."""

from tests.serve.api_fixtures import running_api  # noqa: F401 - fixture
