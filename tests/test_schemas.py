"""Each pydantic record and its pyarrow schema agree field by field, and records round-trip through Arrow."""

from __future__ import annotations

import types
import typing

import pyarrow as pa
import pytest

from schemas.arrow import SCHEMAS, to_table
from schemas.records import (
    BookUpdate,
    Candle,
    ChainAlert,
    ChainBlock,
    DataQualityAlert,
    DexPair,
    IndicatorSnapshot,
    IndicatorValue,
    MarkPrice,
    ReferencePrice,
    Signal,
    StructureEvent,
    TokenTransfer,
    TradeTick,
    VenueEvent,
)

_SCALARS = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}


def _arrow_type(annotation) -> tuple[pa.DataType, bool]:
    """Arrow type a pydantic annotation maps to, and whether it is nullable."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _arrow_type(args[0])[0], True
    if origin is list:
        return pa.list_(_arrow_type(typing.get_args(annotation)[0])[0]), False
    if origin is dict:
        k, v = typing.get_args(annotation)
        return pa.map_(_arrow_type(k)[0], _arrow_type(v)[0]), False
    if isinstance(annotation, type) and issubclass(annotation, str):  # str enums
        return pa.string(), False
    return _SCALARS[annotation], False


@pytest.mark.parametrize("model", list(SCHEMAS), ids=lambda m: m.__name__)
def test_model_and_arrow_schema_agree(model) -> None:
    schema = SCHEMAS[model]
    assert list(model.model_fields) == schema.names
    for name, info in model.model_fields.items():
        expected, _ = _arrow_type(info.annotation)
        assert schema.field(name).type == expected, f"{model.__name__}.{name}"


SAMPLES = {
    TradeTick: TradeTick(market="BINANCE:BTCUSDT", ts=1_600_000_000_000_000_000, price=10.5, size=2.0,
                         side="buy", trade_id=7),
    Candle: Candle(market="X", timeframe="1m", open_ts=0, close_ts=60_000_000_000, open=1, high=2, low=0.5,
                   close=1.5, volume=3, buy_volume=1, sell_volume=2, vwap=1.2, trade_count=4),
    IndicatorValue: IndicatorValue(market="X", timeframe="1m", ts=0, name="rsi_14", value=55.0),
    IndicatorSnapshot: IndicatorSnapshot(market="X", timeframe="1m", ts=0, close=1.0, values={"rsi_14": 50.0}),
    StructureEvent: StructureEvent(id="a", market="X", timeframe="1m", kind="swing_high", ts=0, confirmed_ts=1,
                                   price=2.0, meta={"left": 5.0}),
    Signal: Signal(id="s", market="X", timeframe="1m", ts=1, kind="r", side="buy", strength=0.5, price=1.0,
                   stop=0.9, target=None, reasons=["x > y"], source_versions={"signals": "1"}),
    BookUpdate: BookUpdate(market="BINANCE:BTCUSDT", ts=5, bids=[[10.0, 1.5]], asks=[[10.5, 0.0]],
                           first_seq=3, last_seq=4, checksum=123),
    VenueEvent: VenueEvent(venue="BINANCE", market="BINANCE:BTCUSDT", kind="gap", ts=9, from_id=5, to_id=7),
    ReferencePrice: ReferencePrice(source="coingecko", asset="bitcoin", ts=1, price_usd=60000.0, market_cap_usd=1e12),
    DexPair: DexPair(source="dexscreener", chain="ethereum", pair_address="0xab", dex="uniswap", base_symbol="WETH",
                     base_address="0x1", quote_symbol="USDC", quote_address="0x2", ts=1, liquidity_usd=1e6),
    MarkPrice: MarkPrice(market="BINANCE_FUTURES:BTCUSDT", ts=1, mark_price=60000.5, funding_rate=0.0001),
    ChainAlert: ChainAlert(id="a", chain="ethereum", kind="whale_transfer", ts=1, block_number=5, block_hash="0x1",
                           address="0xab", amount=str(2**200), usd=1.5e6),
    DataQualityAlert: DataQualityAlert(id="BINANCE:BINANCE:BTCUSDT:gap:5:9", ts=9, kind="data_gap", severity="info",
                                       venue="BINANCE", market="BINANCE:BTCUSDT", message="gap"),
    TokenTransfer: TokenTransfer(chain_id=1, token_address="0xbb9bc244d798123fde783fcc1c72d3bb8c189413",
                                 from_address="0x6498077292a0921c8804924fdf47b5e91e2a215f",
                                 to_address="0x8b3b3b624c3c0397d3da8fd861512393d51dcbac", value=str(2**256 - 1),
                                 transaction_hash="0x2e3d", log_index=0, block_number=1755635, block_hash="0x1dec",
                                 block_timestamp=1466669562),
    ChainBlock: ChainBlock(chain_id=1, number=1755635, hash="0x1dec", parent_hash="0xa06f", timestamp=1466669562,
                           transaction_count=2),
}


@pytest.mark.parametrize("model", list(SAMPLES), ids=lambda m: m.__name__)
def test_records_round_trip_through_arrow(model) -> None:
    table = to_table([SAMPLES[model]], model)
    assert table.schema == SCHEMAS[model]
    row = table.to_pylist()[0]
    for k, v in row.items():
        if pa.types.is_map(table.schema.field(k).type):
            row[k] = dict(v)
    assert model.model_validate(row) == SAMPLES[model]


def test_signal_strength_bounds() -> None:
    with pytest.raises(ValueError):
        Signal(id="s", market="X", timeframe="1m", ts=1, kind="r", side="buy", strength=1.5, price=1.0,
               reasons=[], source_versions={})
