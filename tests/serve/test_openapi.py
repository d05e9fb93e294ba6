"""The OpenAPI document client generators read: one stable snake_case operationId per operation, and
every error answer listed with the one error shape (ErrorBody)."""

from __future__ import annotations

import re

import pytest

from serve.api import ApiSettings, create_app

ERROR_REF = "#/components/schemas/ErrorBody"
# the published names clients are generated with: changing one breaks every client
EXPECTED_IDS = {
    "GET /healthz": "get_health", "GET /readyz": "get_readiness",
    "GET /api/v1/markets": "list_markets", "GET /api/v1/markets/{symbol}/candles": "list_candles",
    "GET /api/v1/markets/{symbol}/indicators": "get_indicators",
    "GET /api/v1/markets/{symbol}/structure": "get_structure",
    "GET /api/v1/market/summary": "list_market_summaries",
    "GET /api/v1/signals": "list_signals", "GET /api/v1/signals/{signal_id}": "get_signal",
    "GET /api/v1/backtests": "list_backtests", "GET /api/v1/backtests/{backtest_id}": "get_backtest",
    "GET /api/v1/wallets": "list_wallets", "GET /api/v1/wallets/{address}": "get_wallet",
    "GET /api/v1/transactions": "list_transactions", "GET /api/v1/alerts": "list_alerts",
    "GET /api/v1/admin/users": "list_users", "POST /api/v1/admin/users": "create_user",
    "POST /api/v1/admin/users/{username}/keys": "issue_key", "DELETE /api/v1/admin/keys/{key_id}": "revoke_key",
    "PATCH /api/v1/admin/users/{username}": "update_user",
    "POST /ml/v1/predict": "predict", "POST /rl/v1/act": "act", "POST /ml/v1/anomaly/detect": "detect_anomalies",
    "GET /ml/v1/patterns/wallet/{address}": "get_wallet_patterns",
}


@pytest.fixture(scope="module")
def doc() -> dict:
    # no request is served: the settings only have to exist
    return create_app(ApiSettings("postgresql://unused", "redis://unused")).openapi()


def _operations(doc: dict) -> dict[str, dict]:
    return {f"{m.upper()} {p}": op for p, ops in doc["paths"].items() for m, op in ops.items()}


def _error_schema(response: dict) -> str | None:
    return response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")


def test_every_operation_has_a_unique_snake_case_operation_id(doc: dict) -> None:
    ops = _operations(doc)
    ids = [op.get("operationId") for op in ops.values()]
    assert all(ids), [k for k, op in ops.items() if not op.get("operationId")]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert all(re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", i) for i in ids), ids
    assert {k: ops[k]["operationId"] for k in EXPECTED_IDS if k in ops} == EXPECTED_IDS
    assert set(EXPECTED_IDS) <= set(ops), set(EXPECTED_IDS) - set(ops)


def test_operation_ids_do_not_depend_on_the_app_instance() -> None:
    a = create_app(ApiSettings("postgresql://a", "redis://a")).openapi()
    b = create_app(ApiSettings("postgresql://b", "redis://b")).openapi()
    assert {k: o["operationId"] for k, o in _operations(a).items()} == \
        {k: o["operationId"] for k, o in _operations(b).items()}


def test_errors_are_listed_with_the_error_body(doc: dict) -> None:
    for name, op in _operations(doc).items():
        responses = op["responses"]
        assert _error_schema(responses["422"]) == ERROR_REF, name  # not FastAPI's HTTPValidationError
        assert _error_schema(responses["4XX"]) == ERROR_REF, name
        if op.get("security"):
            assert _error_schema(responses["401"]) == ERROR_REF, name
            assert _error_schema(responses["429"]) == ERROR_REF, name
            assert "Retry-After" in responses["429"]["headers"], name
        for code, response in responses.items():
            if code[0] == "4" or code in ("502",):
                assert _error_schema(response) == ERROR_REF, (name, code)
            assert response.get("description"), (name, code)
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_routes_list_the_errors_their_handlers_raise(doc: dict) -> None:
    ops = _operations(doc)
    for name in ("GET /api/v1/signals/{signal_id}", "GET /api/v1/wallets/{address}",
                 "GET /api/v1/backtests/{backtest_id}", "GET /api/v1/markets/{symbol}/indicators",
                 "GET /ml/v1/patterns/wallet/{address}", "POST /ml/v1/anomaly/detect", "POST /ml/v1/predict",
                 "POST /rl/v1/act"):
        assert "404" in ops[name]["responses"], name
    for name in ("POST /ml/v1/predict", "POST /rl/v1/act"):
        assert {"502", "503"} <= set(ops[name]["responses"]), name
    admin = [k for k in ops if k.split()[1].startswith("/api/v1/admin/")]
    assert set(admin) == {"GET /api/v1/admin/users", "POST /api/v1/admin/users",
                          "POST /api/v1/admin/users/{username}/keys", "DELETE /api/v1/admin/keys/{key_id}",
                          "PATCH /api/v1/admin/users/{username}", "PUT /api/v1/admin/users/{username}/password",
                          "POST /api/v1/admin/auth/rotate-key", "GET /api/v1/admin/auth/keys"}
    for name in admin:
        assert "403" in ops[name]["responses"], name
    assert "409" in ops["POST /api/v1/admin/users"]["responses"]
    assert "security" not in ops["GET /healthz"] and "401" not in ops["GET /healthz"]["responses"]


def test_main_resources_are_typed_with_examples(doc: dict) -> None:
    schemas = doc["components"]["schemas"]
    ops = _operations(doc)

    def ok_schema(name: str) -> str:
        return ops[name]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert ok_schema("GET /api/v1/signals") == "SignalPage"
    assert ok_schema("GET /api/v1/signals/{signal_id}") == "SignalItem"
    assert ok_schema("GET /api/v1/markets/{symbol}/candles") == "CandlePage"
    assert ok_schema("GET /api/v1/market/summary") == "MarketSummaryPage"
    for name in ("Candle", "Signal", "IndicatorValues", "StructureEvent", "Market", "MarketSummary", "Wallet",
                 "WalletSummary", "Transfer", "Alert", "ErrorBody", "NewUser", "AnomalyRequest"):
        assert schemas[name].get("examples"), name
    assert schemas["SignalPage"]["properties"]["items"]["items"] == {"$ref": "#/components/schemas/Signal"}
    # the record's fields, from schemas.records (one definition), floats nullable
    from schemas.records import Candle, Signal
    assert list(schemas["Signal"]["properties"]) == list(Signal.model_fields)
    assert list(schemas["Candle"]["properties"]) == list(Candle.model_fields)
    assert {"type": "null"} in schemas["Candle"]["properties"]["close"]["anyOf"]
