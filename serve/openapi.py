"""The OpenAPI document client generators read: stable operation ids and every error answer modelled.

Routes name their operation with ``operation_id=`` (snake_case, ``list_signals``, ``get_signal``, ...);
a route without one gets its handler's name (:func:`unique_id`), never FastAPI's path-derived id, so
ids do not change when a path does. Routes list the errors their handler raises with :func:`errors`;
:func:`install` adds the ones every route shares: 422 (the text guard and validation answer in the one
error shape, not FastAPI's ``HTTPValidationError``) and, where a key is needed, 401 and 429.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from schemas.errors import CryptoIntelError
from serve.api_models import ErrorBody

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                                "schema": {"type": "integer", "minimum": 1}}}

ERRORS: dict[int, dict[str, Any]] = {
    401: {"description": "No API key, or an unknown, revoked or disabled one (`unauthorized`)",
          "headers": {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}},
    403: {"description": "The key's role may not call this (`forbidden`: admin routes need the admin role)"},
    404: {"description": "No such resource (`not_found`, `unknown_version`)"},
    409: {"description": "It exists already (`conflict`)"},
    422: {"description": "A parameter or body the API cannot take (`invalid_request`, `invalid_text`, "
                         "`invalid_time`, `invalid_cursor`, `invalid_value`, ...)"},
    429: {"description": "The key's rate limit is reached (`rate_limited`)", "headers": _RETRY_AFTER},
    502: {"description": "A stored input the answer needs is malformed (`bad_feature_row`)"},
    503: {"description": "The model or policy is not deployed or has no promoted version (`model_unavailable`)",
          "headers": _RETRY_AFTER},
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries of the errors a handler raises, each with the :class:`ErrorBody` model."""
    return {code: {"model": ErrorBody, **ERRORS[code]} for code in codes}


def unique_id(route: APIRoute) -> str:
    """A route's operation id when it names none: its handler's name (FastAPI's ``generate_unique_id_function``)."""
    return route.name


def _error_response(code: int) -> dict[str, Any]:
    return {**ERRORS[code], "content": {"application/json": {"schema": ERROR_REF}}}


def _drop_unset_examples(op: dict[str, Any]) -> None:
    # FastAPI leaves out a parameter's deprecated singular `example` by identity with its `_Unset`
    # sentinel; in a Serve replica the app is unpickled, the sentinel is a copy, and every parameter
    # would publish `"example": {}` (a wrong example for a string or an int). No route sets `example`.
    for param in op.get("parameters", []):
        if param.get("example") == {}:
            del param["example"]
    for media in op.get("requestBody", {}).get("content", {}).values():
        if media.get("example") == {}:
            del media["example"]


def complete(doc: dict[str, Any]) -> dict[str, Any]:
    """Add the errors every operation shares to an OpenAPI document (in place, and returned)."""
    for ops in doc.get("paths", {}).values():
        for op in ops.values():
            _drop_unset_examples(op)
            responses = op.setdefault("responses", {})
            responses["422"] = _error_response(422)  # the text guard answers 422 on any route
            if op.get("security"):
                for code in (401, 429):
                    responses.setdefault(str(code), _error_response(code))
    schemas = doc.get("components", {}).get("schemas", {})
    text = str(doc.get("paths"))
    for name in ("HTTPValidationError", "ValidationError"):
        if name in schemas and f"#/components/schemas/{name}'" not in text and not any(
                f"#/components/schemas/{name}'" in str(s) for n, s in schemas.items() if n != name):
            del schemas[name]
    return doc


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` publish the completed document (built once, then cached by FastAPI)."""
    build = app.openapi
    done: list[int] = []

    def openapi() -> dict[str, Any]:
        doc = build()
        if id(doc) not in done:
            complete(doc)
            done[:] = [id(doc)]
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


CLIENT_PACKAGE = "crypto_intel_client"
# no post-processing hooks: the generator's default runs ruff over the output, which needs nothing more
# and adds nothing a build or a test relies on
_CLIENT_CONFIG = f"package_name_override: {CLIENT_PACKAGE}\npost_hooks: []\n"


class ClientGenerationError(CryptoIntelError, RuntimeError):
    """openapi-python-client is missing or refused the document."""


def generate_client(doc: dict[str, Any], out_dir: str | Path) -> Path:
    """Generate the Python client of ``doc`` (an OpenAPI document) with openapi-python-client (the ``test``
    extra) into ``out_dir/crypto_intel_client``, replacing any earlier one; returns ``out_dir``, the folder
    to put on ``sys.path``. Any warning of the generator (a schema it could not type) is an error."""
    import subprocess
    import sys
    import tempfile

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="openapi-") as tmp:
        spec, config = Path(tmp) / "openapi.json", Path(tmp) / "config.yaml"
        spec.write_text(json.dumps(doc))
        config.write_text(_CLIENT_CONFIG)
        try:
            done = subprocess.run([sys.executable, "-m", "openapi_python_client", "generate", "--path", str(spec),
                                   "--config", str(config), "--output-path", str(out / CLIENT_PACKAGE),
                                   "--meta", "none", "--overwrite", "--fail-on-warning"],
                                  capture_output=True, text=True, timeout=300, check=False)
        except FileNotFoundError as e:
            raise ClientGenerationError(f"cannot run {sys.executable}: {e}") from None
    if done.returncode != 0 or "No module named" in done.stderr:
        raise ClientGenerationError("openapi-python-client failed (pip install -e '.[test]' installs it): "
                                    f"{(done.stdout + done.stderr)[-3000:]}")
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m serve.openapi OUT_DIR``: write the API's ``openapi.json`` and its generated client there."""
    import argparse

    from serve.api import create_app
    parser = argparse.ArgumentParser(prog="python -m serve.openapi", description=main.__doc__)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    doc = create_app().openapi()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "openapi.json").write_text(json.dumps(doc, indent=1) + "\n")
    generate_client(doc, args.out_dir)
    print(f"wrote {args.out_dir / 'openapi.json'} and {args.out_dir / CLIENT_PACKAGE}/ "
          f"(PYTHONPATH={args.out_dir} to import it)")


if __name__ == "__main__":
    main()
