"""Both records of the ``alerts`` feed channel keep their wire shape: a data-quality alert from a venue event,
and a chain alert, encode to exactly the JSON subscribers got before they were records."""

from __future__ import annotations

from connectors.storage.redis_keys import encode_record
from engine.sinks.jsonl import record_dict
from engine.venues.quality import venue_event_alerts
from schemas.records import ChainAlert, DataQualityAlert, VenueEvent


def test_data_quality_alerts_on_the_feed() -> None:
    events = [VenueEvent(venue="BINANCE", market="BINANCE:BTCUSDT", kind=k, ts=10 + i, from_id=5, to_id=7,
                         detail="late" if k == "repair" else "")
              for i, k in enumerate(["gap", "repair", "state", "degraded", "skew", "unrepaired", "resync"])]
    alerts = venue_event_alerts(events)
    assert all(isinstance(a, DataQualityAlert) for a in alerts)
    assert [encode_record(record_dict(a)) for a in alerts][:2] == [
        '{"id":"BINANCE:BINANCE:BTCUSDT:gap:5:10","kind":"data_gap","market":"BINANCE:BTCUSDT",'
        '"message":"BINANCE BINANCE:BTCUSDT gap:","severity":"info","ts":10,"venue":"BINANCE"}',
        '{"id":"BINANCE:BINANCE:BTCUSDT:repair:5:11","kind":"data_repair","market":"BINANCE:BTCUSDT",'
        '"message":"BINANCE BINANCE:BTCUSDT repair: late","severity":"info","ts":11,"venue":"BINANCE"}']
    assert [(a.kind, a.severity) for a in alerts[2:]] == [("data_degraded", "high"), ("data_unrepaired", "high"),
                                                         ("data_resync", "info")]


def test_chain_alert_json_keeps_its_field_order() -> None:
    """``chain-alerts.jsonl`` is written with ``model_dump_json``: the field order is part of the file."""
    a = ChainAlert(id="a", chain="ethereum", kind="whale_transfer", ts=1, block_number=5, block_hash="0x1",
                   address="0xab", amount="7", usd=1.5e6, severity="high")
    assert a.model_dump_json() == (
        '{"id":"a","chain":"ethereum","kind":"whale_transfer","ts":1,"block_number":5,"block_hash":"0x1",'
        '"tx_hash":"","address":"0xab","counterparty":"","token_address":"","amount":"7","usd":1500000.0,'
        '"severity":"high","message":"","retracted":false}')
