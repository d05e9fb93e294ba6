"""DEX swaps as trade ticks: Uniswap V2/V3 ``Swap`` events priced from amounts and token decimals.

Token metadata comes from ``eth_call`` (``token0()``, ``token1()``, ``decimals()``, ``symbol()``),
cached per address; a token that does not answer (non-standard, self-destructed) makes its pool
unpriceable, counted, never a crash. The pool's token0 is the base: a swap paying token0 into the
pool is a sell of token0, one taking token0 out is a buy. Markets are ``UNIV2:<SYM0><SYM1>`` and
``UNIV3:<SYM0><SYM1>``; trade ids are ``block_number * 100_000 + log_index`` (unique, increasing).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.batches import SIDE_BUY, SIDE_SELL
from schemas.records import TradeTick

SELECTORS = {"token0": "0x0dfe1681", "token1": "0xd21220a7", "decimals": "0x313ce567", "symbol": "0x95d89b41"}


@dataclass(frozen=True)
class PoolMeta:
    token0: str
    token1: str
    decimals0: int
    decimals1: int
    symbol0: str
    symbol1: str


def decode_symbol(ret: str) -> str:
    """A ``symbol()`` return value: ABI string, or bytes32 (old tokens such as MKR)."""
    data = bytes.fromhex(ret.removeprefix("0x"))
    if len(data) >= 64:
        length = int.from_bytes(data[32:64], "big")
        if 0 < length <= len(data) - 64:
            return data[64:64 + length].decode("utf-8", "replace").strip("\x00").strip()
    return data[:32].rstrip(b"\x00").decode("utf-8", "replace").strip()


class TokenMetadata:
    """Pool and token metadata through ``eth_call`` with caching and graceful failure."""

    def __init__(self, rpc) -> None:
        self.rpc = rpc
        self.pools: dict[str, PoolMeta | None] = {}
        self.tokens: dict[str, tuple[int, str] | None] = {}
        self.stats = {"calls": 0, "failures": 0}

    async def _call(self, to: str, selector: str) -> str | None:
        self.stats["calls"] += 1
        try:
            ret = await self.rpc.call(to, selector)
        except Exception:  # any node or decoding failure: this token simply has no metadata
            self.stats["failures"] += 1
            return None
        return ret if isinstance(ret, str) and len(ret) >= 66 else None

    async def token(self, address: str) -> tuple[int, str] | None:
        if address not in self.tokens:
            dec, sym = await self._call(address, SELECTORS["decimals"]), await self._call(address, SELECTORS["symbol"])
            decimals = int(dec, 16) if dec else None
            self.tokens[address] = None if decimals is None or decimals > 77 else (decimals, decode_symbol(sym) if sym else address[:8])
        return self.tokens[address]

    async def pool(self, address: str) -> PoolMeta | None:
        if address not in self.pools:
            t0, t1 = await self._call(address, SELECTORS["token0"]), await self._call(address, SELECTORS["token1"])
            meta = None
            if t0 and t1:
                a0, a1 = "0x" + t0[-40:].lower(), "0x" + t1[-40:].lower()
                m0, m1 = await self.token(a0), await self.token(a1)
                if m0 and m1:
                    meta = PoolMeta(a0, a1, m0[0], m1[0], m0[1], m1[1])
            self.pools[address] = meta
        return self.pools[address]


def swap_trade(swap: dict, meta: PoolMeta, ts_s: int) -> TradeTick | None:
    """The trade tick of one decoded swap, or None when it moved no base token (nothing to price)."""
    if swap["event"] == "uniswap_v2_swap":
        venue = "UNIV2"
        base_in, base_out = swap["amount0_in"], swap["amount0_out"]
        quote_in, quote_out = swap["amount1_in"], swap["amount1_out"]
    else:
        venue = "UNIV3"
        a0, a1 = swap["amount0"], swap["amount1"]  # signed from the pool's side
        base_in, base_out = max(a0, 0), max(-a0, 0)
        quote_in, quote_out = max(a1, 0), max(-a1, 0)
    if base_in and not base_out:
        side, base, quote = SIDE_SELL, base_in, quote_out
    elif base_out and not base_in:
        side, base, quote = SIDE_BUY, base_out, quote_in
    else:
        return None
    size = base / 10 ** meta.decimals0
    if size <= 0 or quote <= 0:
        return None
    price = quote / 10 ** meta.decimals1 / size
    return TradeTick(market=f"{venue}:{meta.symbol0}{meta.symbol1}".upper(), ts=ts_s * 1_000_000_000, price=price,
                     size=size, side={SIDE_BUY: "buy", SIDE_SELL: "sell"}[side],
                     trade_id=swap["block_number"] * 100_000 + swap["log_index"])
