"""Schemathesis hooks for tests/serve/test_api_schema.py, loaded by the CLI through SCHEMATHESIS_HOOKS.

- PATCH /admin/users/{username} aimed at a user the test session relies on (the shared admin, pro
  and free users, the run's own admin) goes to a throwaway user instead, so that generated input
  (``{"disabled": true}``, another tier) cannot lock out the run or later tests; the request still
  runs, against a user that exists.
- Every call is appended to a JSON-lines log (operation, method, status) for the test to count.
"""

from __future__ import annotations

import json
import os
import threading

import schemathesis

PROTECTED = frozenset(filter(None, os.environ.get("CI_ST_PROTECTED_USERS", "").split(",")))
STAND_IN = os.environ.get("CI_ST_STAND_IN_USER", "")
LOG = os.environ.get("CI_ST_CALL_LOG", "")
_lock = threading.Lock()


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    name = case.path_parameters.get("username") if case.path_parameters else None
    if case.method.upper() == "PATCH" and STAND_IN and isinstance(name, str) and name in PROTECTED:
        case.path_parameters["username"] = STAND_IN


@schemathesis.hook
def after_call(context, case, response) -> None:
    if not LOG:
        return
    line = json.dumps({"operation": f"{case.operation.method.upper()} {case.operation.path}",
                       "method": case.method.upper(), "status": response.status_code,
                       "body": response.text[:300] if response.status_code >= 500 else None})
    with _lock, open(LOG, "a", encoding="utf-8") as f:
        f.write(line + "\n")
