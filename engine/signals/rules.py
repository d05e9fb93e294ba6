"""Signal rules: conditions over indicator, candle and structure columns, loaded from Python or TOML.

A condition reads ``"<column> <op> <column|number>"`` with op one of ``> < >= <= crosses_above
crosses_below``, e.g. ``"rsi_14 crosses_below 30"`` or ``"close > ema_200"``.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from schemas.errors import ConfigError

OPS = (">", "<", ">=", "<=", "crosses_above", "crosses_below")
SIDES = ("buy", "sell")


@dataclass(frozen=True)
class Condition:
    """``left op right``; ``right`` is a column name or a constant."""

    left: str
    op: str
    right: str | float

    @classmethod
    def parse(cls, text: str) -> "Condition":
        parts = text.split()
        if len(parts) != 3 or parts[1] not in OPS:
            raise ConfigError(f"bad condition {text!r}: write '<column> <op> <column or number>' "
                              f"with op one of {', '.join(OPS)}")
        try:
            right: str | float = float(parts[2])
        except ValueError:
            right = parts[2]
        return cls(parts[0], parts[1], right)

    def columns(self) -> list[str]:
        return [self.left] + ([self.right] if isinstance(self.right, str) else [])

    def __str__(self) -> str:
        right = self.right if isinstance(self.right, str) else f"{self.right:g}"
        return f"{self.left} {self.op} {right}"


@dataclass(frozen=True)
class Rule:
    """All conditions true on a closed bar → a Signal of ``side`` named ``name``."""

    name: str
    side: str
    when: tuple[Condition, ...]
    strength: float = 0.5
    timeframes: tuple[str, ...] = ()  # empty: every timeframe
    stop_atr: float | None = None  # stop at close ∓ stop_atr × the ATR column
    target_atr: float | None = None  # first target at close ± target_atr × ATR
    more_targets_atr: tuple[float, ...] = ()  # further targets, in ATR multiples, farther out
    atr: str = "atr_14"
    cooldown_bars: int = 0  # after firing, stay quiet this many bars of the same market and timeframe

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ConfigError(f"rule {self.name!r}: side must be buy or sell, got {self.side!r}")
        if not 0.0 <= self.strength <= 1.0:
            raise ConfigError(f"rule {self.name!r}: strength must be within 0..1, got {self.strength}")
        if not self.when:
            raise ConfigError(f"rule {self.name!r}: needs at least one condition")
        targets = ((self.target_atr,) if self.target_atr else ()) + tuple(self.more_targets_atr)
        if self.more_targets_atr and not self.target_atr:
            raise ConfigError(f"rule {self.name!r}: more targets need a first target_atr")
        if any(b <= a for a, b in zip(targets, targets[1:])) or any(t <= 0 for t in targets):
            raise ConfigError(f"rule {self.name!r}: targets must be positive and increasing, got {targets}")
        if self.cooldown_bars < 0:
            raise ConfigError(f"rule {self.name!r}: cooldown_bars must be >= 0, got {self.cooldown_bars}")


@dataclass(frozen=True)
class Strategy:
    """A named set of rules and the indicators they read."""

    name: str
    indicators: tuple[str, ...]
    rules: tuple[Rule, ...]
    description: str = ""
    max_risk_score: float | None = None  # signals above it are flagged "risk_limit", never dropped
    params: dict = field(default_factory=dict, compare=False)  # the values its document's {name}s took
    version: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ConfigError(f"strategy {self.name!r}: rule names must be unique, got {names}")
        text = repr((self.indicators, self.rules, self.max_risk_score))
        object.__setattr__(self, "version", hashlib.blake2b(text.encode(), digest_size=4).hexdigest())

    def columns(self) -> set[str]:
        cols = {c for r in self.rules for cond in r.when for c in cond.columns()}
        cols |= {r.atr for r in self.rules if r.stop_atr or r.target_atr}
        return cols


def rule(name: str, side: str, *when: str, **kw) -> Rule:
    """A Rule from condition texts (shorthand for strategies written in Python)."""
    return Rule(name, side, tuple(Condition.parse(w) for w in when), **kw)


def _r(name: str, side: str, *when: str, **kw) -> dict:
    """A [[rule]] table of a built-in strategy document."""
    return {"name": name, "side": side, "when": list(when), **kw}


# Built-in strategies, written as the documents a TOML strategy file holds; ``{name}`` stands for a
# parameter of the [params] table (a sweep or ``--params`` sets them; the defaults give the strategy as named).
BUILTIN_DOCS: dict[str, dict] = {
    "default": {
        "description": "RSI extremes with the 200 EMA trend, EMA 20/50 crosses, and breaks of confirmed swings.",
        "params": {"rsi_len": 14, "rsi_low": 30, "rsi_high": 70, "fast": 20, "slow": 50, "trend": 200,
                   "atr_len": 14, "atr_mult": 2.0},
        "indicators": ["rsi:{rsi_len}", "ema:{fast}", "ema:{slow}", "ema:{trend}", "atr:{atr_len}"],
        "rule": [
            _r("rsi_oversold_uptrend", "buy", "rsi_{rsi_len} crosses_below {rsi_low}", "close > ema_{trend}",
               strength=0.6, stop_atr="{atr_mult}", target_atr=3.0, atr="atr_{atr_len}"),
            _r("rsi_overbought_downtrend", "sell", "rsi_{rsi_len} crosses_above {rsi_high}", "close < ema_{trend}",
               strength=0.6, stop_atr="{atr_mult}", target_atr=3.0, atr="atr_{atr_len}"),
            _r("ema_cross_up", "buy", "ema_{fast} crosses_above ema_{slow}", "close > ema_{trend}",
               strength=0.5, stop_atr="{atr_mult}", target_atr=4.0, atr="atr_{atr_len}"),
            _r("ema_cross_down", "sell", "ema_{fast} crosses_below ema_{slow}", "close < ema_{trend}",
               strength=0.5, stop_atr="{atr_mult}", target_atr=4.0, atr="atr_{atr_len}"),
            _r("swing_breakout_up", "buy", "close crosses_above last_swing_high",
               strength=0.4, stop_atr=1.5, target_atr=3.0, atr="atr_{atr_len}"),
            _r("swing_breakdown", "sell", "close crosses_below last_swing_low",
               strength=0.4, stop_atr=1.5, target_atr=3.0, atr="atr_{atr_len}"),
        ],
    },
    "trend": {
        "description": "Trend following: EMA 20/50 crosses in the direction of the 200 EMA while ADX says a trend "
                       "exists.",
        "params": {"fast": 20, "slow": 50, "trend": 200, "adx_len": 14, "adx_min": 20, "atr_mult": 2.5},
        "indicators": ["ema:{fast}", "ema:{slow}", "ema:{trend}", "adx:{adx_len}", "atr:14"],
        "rule": [
            _r("trend_long", "buy", "ema_{fast} crosses_above ema_{slow}", "close > ema_{trend}",
               "adx_{adx_len} > {adx_min}", strength=0.6, stop_atr="{atr_mult}", target_atr=3.0,
               more_targets_atr=[5.0, 8.0], cooldown_bars=10),
            _r("trend_short", "sell", "ema_{fast} crosses_below ema_{slow}", "close < ema_{trend}",
               "adx_{adx_len} > {adx_min}", strength=0.6, stop_atr="{atr_mult}", target_atr=3.0,
               more_targets_atr=[5.0, 8.0], cooldown_bars=10),
        ],
    },
    "mean_reversion": {
        "description": "Mean reversion: RSI extremes outside the Bollinger bands.",
        "params": {"rsi_len": 14, "rsi_low": 30, "rsi_high": 70, "atr_mult": 1.5},
        "indicators": ["rsi:{rsi_len}", "bbands:20:2", "atr:14"],
        "rule": [
            _r("oversold_band", "buy", "rsi_{rsi_len} crosses_below {rsi_low}", "close < bbands_20_2_lower",
               strength=0.5, stop_atr="{atr_mult}", target_atr=2.0, cooldown_bars=5),
            _r("overbought_band", "sell", "rsi_{rsi_len} crosses_above {rsi_high}", "close > bbands_20_2_upper",
               strength=0.5, stop_atr="{atr_mult}", target_atr=2.0, cooldown_bars=5),
        ],
    },
    "smc_continuation": {
        "description": "Smart-money continuation: a break of structure with the 200 EMA trend while a fair value "
                       "gap of the same side is open.",
        "params": {"trend": 200, "atr_mult": 2.0},
        "indicators": ["ema:{trend}", "atr:14"],
        "rule": [
            _r("bos_long", "buy", "bos > 0", "close > ema_{trend}", "fvg_bull_bottom > 0",
               strength=0.6, stop_atr="{atr_mult}", target_atr=4.0, cooldown_bars=5),
            _r("bos_short", "sell", "bos < 0", "close < ema_{trend}", "fvg_bear_top > 0",
               strength=0.6, stop_atr="{atr_mult}", target_atr=4.0, cooldown_bars=5),
        ],
    },
    "smc_reversal": {
        "description": "Smart-money reversal: a change of character before momentum is stretched the new way.",
        "params": {"rsi_len": 14, "atr_mult": 2.0},
        "indicators": ["rsi:{rsi_len}", "atr:14"],
        "rule": [
            _r("choch_long", "buy", "choch > 0", "rsi_{rsi_len} < 60", strength=0.5, stop_atr="{atr_mult}",
               target_atr=3.0, cooldown_bars=5),
            _r("choch_short", "sell", "choch < 0", "rsi_{rsi_len} > 40", strength=0.5, stop_atr="{atr_mult}",
               target_atr=3.0, cooldown_bars=5),
        ],
    },
    "sma_cross": {
        "description": "SMA crossover: long when the fast SMA crosses above the slow one, short (or flat) when it "
                       "crosses below; no stops or targets.",
        "params": {"fast": 10, "slow": 30},
        "indicators": ["sma:{fast}", "sma:{slow}"],
        "rule": [
            _r("sma_cross_up", "buy", "sma_{fast} crosses_above sma_{slow}", strength=0.5),
            _r("sma_cross_down", "sell", "sma_{fast} crosses_below sma_{slow}", strength=0.5),
        ],
    },
}


def _fmt_param(v) -> str:
    """A parameter as it appears in specs and column names: 14 (not 14.0), 1.5."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return repr(v) if isinstance(v, float) else str(v)


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _render(value, params: dict, where: str):
    """``value`` with every ``{name}`` replaced by its parameter; a string that is one placeholder and nothing
    else becomes the parameter's number (for numeric fields)."""
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        missing = [n for n in _PLACEHOLDER.findall(value) if n not in params]
        if missing:
            raise ConfigError(f"{where}: unknown parameter {{{missing[0]}}}; parameters are "
                              f"{', '.join(params) or 'none'}")
        if whole:
            return params[whole.group(1)]
        return _PLACEHOLDER.sub(lambda m: _fmt_param(params[m.group(1)]), value)
    if isinstance(value, list):
        return [_render(v, params, where) for v in value]
    if isinstance(value, dict):
        return {k: (v if k == "params" else _render(v, params, where)) for k, v in value.items()}
    return value


def strategy_params(doc: dict, overrides: dict | None, where: str) -> dict:
    """The document's [params] with ``overrides`` applied (unknown names are an error)."""
    params = dict(doc.get("params", {}))
    for k, v in (overrides or {}).items():
        if k not in params:
            raise ConfigError(f"{where}: unknown parameter {k!r}; parameters are {', '.join(params) or 'none'}")
        if not _is_number(v) or v != v or v in (float("inf"), float("-inf")):
            raise ConfigError(f"{where}: parameter {k!r} must be a finite number, got {v!r}")
        params[k] = v
    return params


def strategy_from_doc(doc: dict, name: str, where: str, params: dict | None = None) -> Strategy:
    """A strategy from its document (a parsed TOML file or a built-in), parameters substituted."""
    values = strategy_params(doc, params, where)
    doc = _render(doc, values, where)
    try:
        rules = tuple(
            Rule(r["name"], r["side"], tuple(Condition.parse(w) for w in r["when"]),
                 strength=float(r.get("strength", 0.5)), timeframes=tuple(r.get("timeframes", ())),
                 stop_atr=r.get("stop_atr"), target_atr=r.get("target_atr"), atr=r.get("atr", "atr_14"),
                 cooldown_bars=int(r.get("cooldown_bars", 0)),
                 more_targets_atr=tuple(float(t) for t in r.get("more_targets_atr", ())))
            for r in doc.get("rule", []))
        return Strategy(doc.get("name", name), tuple(doc.get("indicators", ())), rules,
                        doc.get("description", ""), doc.get("max_risk_score"), params=values)
    except KeyError as e:
        raise ConfigError(f"{where}: every [[rule]] needs name, side and when; missing {e}") from None


BUILTIN: dict[str, Strategy] = {name: strategy_from_doc(doc, name, f"strategy {name!r}")
                                for name, doc in BUILTIN_DOCS.items()}


def load_strategy(name_or_path: str, params: dict | None = None) -> Strategy:
    """A built-in strategy by name, or one read from a TOML file; ``params`` override its [params]."""
    if name_or_path in BUILTIN:
        if not params:
            return BUILTIN[name_or_path]
        if name_or_path not in BUILTIN_DOCS:  # registered at run time as an object: no parameters
            raise ConfigError(f"strategy {name_or_path!r} has no parameters")
        return strategy_from_doc({"name": name_or_path, **BUILTIN_DOCS[name_or_path]}, name_or_path,
                                 f"strategy {name_or_path!r}", params)
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"unknown strategy {name_or_path!r}: use one of {', '.join(BUILTIN)} "
                          f"or the path of a TOML file")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} cannot be decoded); "
                          "a strategy file is TOML, which is UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the strategy file: {e.strerror or e}") from None
    _check_keys(doc, _STRATEGY_KEYS, "", path)
    params_table = doc.get("params", {})
    for k, v in params_table.items():
        if not _is_number(v):
            raise ConfigError(f"{path}: [params] {k} must be a number, got {v!r}")
    rendered = _render({k: v for k, v in doc.items() if k != "params"}, strategy_params(doc, params, str(path)),
                       str(path))
    for i, r in enumerate(rendered.get("rule", []), 1):
        named = f" {r['name']!r}" if isinstance(r.get("name"), str) else ""
        _check_keys(r, _RULE_KEYS, f"[[rule]] {i}{named}: ", path)
    return strategy_from_doc({**doc, "name": doc.get("name", path.stem)}, path.stem, str(path), params)


# the keys of a strategy file and of each [[rule]], with the kind of value each takes
_STRATEGY_KEYS = {"name": "a string", "description": "a string", "indicators": "a list of strings",
                  "max_risk_score": "a number", "rule": "an array of tables", "params": "a table"}
_RULE_KEYS = {"name": "a string", "side": "a string", "when": "a list of strings", "strength": "a number",
              "timeframes": "a list of strings", "stop_atr": "a number", "target_atr": "a number",
              "more_targets_atr": "a list of numbers", "atr": "a string", "cooldown_bars": "a whole number"}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_KINDS = {
    "a string": lambda v: isinstance(v, str),
    "a number": _is_number,
    "a whole number": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "a list of strings": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "a list of numbers": lambda v: isinstance(v, list) and all(_is_number(x) for x in v),
    "an array of tables": lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
    "a table": lambda v: isinstance(v, dict),
}


def _check_keys(table: dict, keys: dict[str, str], where: str, path: Path) -> None:
    """Unknown keys and values of the wrong type, named with the file and the table they are in."""
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise ConfigError(f"{path}: {where}unknown key{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(unknown)}; known keys are {', '.join(keys)}")
    for key, kind in keys.items():
        if key in table and not _KINDS[kind](table[key]):
            shown = repr(table[key])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            hint = " (write [[rule]] sections)" if kind == "an array of tables" else ""
            raise ConfigError(f"{path}: {where}{key} must be {kind}, got {shown}{hint}")
