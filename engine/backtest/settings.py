"""How a backtest fills, charges and sizes: the settings every mode shares (CLI flags map one to one)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from schemas.errors import ConfigError

FILLS = ("next_open", "close")
MODES = ("long-only", "short-only", "long-short")
INTRABAR = ("stop", "target", "ohlc")  # which exit wins when one bar touches both stop and target
ENTRIES = ("market", "limit", "stop")
SIZE_KINDS = ("fixed", "cash", "equity", "risk")


@dataclass(frozen=True)
class Size:
    """``fixed:Q`` units, ``cash:X`` of notional, ``equity:F`` fraction of equity as notional, ``risk:R``
    fraction of equity lost if the signal's stop is hit (needs a stop: the ATR stop of the rule)."""

    kind: str = "equity"
    value: float = 1.0

    @classmethod
    def parse(cls, text: str) -> "Size":
        kind, _, value = text.partition(":")
        if kind not in SIZE_KINDS or not value:
            raise ConfigError(f"bad size {text!r}: write fixed:Q, cash:X, equity:F or risk:R, e.g. equity:0.5")
        try:
            v = float(value)
        except ValueError:
            raise ConfigError(f"bad size {text!r}: {value!r} is not a number") from None
        if not v > 0 or v != v or v == float("inf"):
            raise ConfigError(f"bad size {text!r}: the amount must be a positive finite number")
        if kind == "risk" and v >= 1:
            raise ConfigError(f"bad size {text!r}: a risk fraction is below 1, e.g. risk:0.01")
        return cls(kind, v)

    def __str__(self) -> str:
        return f"{self.kind}:{self.value:g}"


@dataclass(frozen=True)
class BacktestSettings:
    fill: str = "next_open"  # market orders: the next bar's open, or the signal bar's close
    fee: float = 0.001  # taker fee, fraction of notional (market and stop fills)
    maker_fee: float | None = None  # limit fills (entries by limit, targets); None: as ``fee``
    slippage_bps: float = 0.0  # adverse, on market and stop fills
    slippage_volume: float = 0.0  # extra adverse fraction per unit of participation (size / bar volume)
    mode: str = "long-only"
    size: Size = field(default_factory=Size)
    cash: float = 10_000.0
    leverage: float = 1.0  # entries are clipped to leverage x equity of notional
    intrabar: str = "stop"
    entry: str = "market"  # market, or limit/stop orders at the signal price moved by entry_offset_bps
    entry_offset_bps: float = 0.0  # limit: below (buy) / above (sell) the signal price; stop: the other way
    entry_bars: int = 1  # bars a limit or stop entry stays working

    def __post_init__(self) -> None:
        for name, allowed in (("fill", FILLS), ("mode", MODES), ("intrabar", INTRABAR), ("entry", ENTRIES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, name)!r}")
        for name in ("fee", "slippage_bps", "slippage_volume", "entry_offset_bps"):
            v = getattr(self, name)
            if not (0 <= v < float("inf")):
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v}")
        if self.maker_fee is not None and not (-0.01 <= self.maker_fee < 0.1):
            raise ConfigError(f"--maker-fee must be within -0.01..0.1 (negative: a rebate), got {self.maker_fee}")
        if self.fee >= 0.1:
            raise ConfigError(f"--fee is a fraction of notional (0.001 = 0.1%), got {self.fee}")
        if not (self.cash > 0 and self.cash < float("inf")):
            raise ConfigError(f"--cash must be a positive amount, got {self.cash}")
        if not (self.leverage > 0 and self.leverage < float("inf")):
            raise ConfigError(f"--leverage must be positive, got {self.leverage}")
        if self.entry_bars < 1:
            raise ConfigError(f"--entry-bars must be >= 1, got {self.entry_bars}")

    @property
    def maker(self) -> float:
        return self.fee if self.maker_fee is None else self.maker_fee

    def describe(self) -> dict:
        d = asdict(self)
        d["size"] = str(self.size)
        d["maker_fee"] = self.maker
        return d
