"""Parameter sweeps and walk-forward analysis: the grid, the tasks and their result rows (pure; Ray runs the
tasks in ``actors.backtest_sweep``).

Each task is one parameter combination on one market with its own account, so tasks are independent and
their rows are the same whether they run serially or in parallel. Walk-forward cuts the history into
rolling windows of ``train`` then ``test``; in every window the best combination in sample (highest Sharpe,
ties by total return then combination order) is reported with its out-of-sample result beside it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

from engine.backtest.runner import run_backtest
from engine.backtest.settings import BacktestSettings
from schemas.batches import CandleBatch, TradeBatch
from schemas.errors import ConfigError
from schemas.timeframes import parse_timeframe

ROW_METRICS = ("total_return", "annual_return", "sharpe", "sortino", "max_drawdown", "calmar", "volatility",
               "win_rate", "profit_factor", "expectancy", "trades", "fees", "exposure")
_RANGE = re.compile(r"^(-?[0-9.]+)\.\.(-?[0-9.]+)(?::([0-9.]+))?$")


def _number(text: str, where: str):
    try:
        v = float(text)
    except ValueError:
        raise ConfigError(f"--grid: {where}: {text!r} is not a number") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise ConfigError(f"--grid: {where}: {text!r} is not a finite number")
    return int(v) if re.fullmatch(r"-?[0-9]+", text) else v


def parse_grid(text: str) -> dict[str, list]:
    """``"rsi_len=7..21:7,atr_mult=1.5,2,3"`` -> {"rsi_len": [7, 14, 21], "atr_mult": [1.5, 2, 3]}.

    ``a..b:step`` is inclusive (step 1 when omitted); a value without ``name=`` belongs to the name before it.
    """
    grid: dict[str, list] = {}
    name = None
    for token in (t.strip() for t in text.split(",")):
        if not token:
            raise ConfigError(f"--grid {text!r}: empty value; write name=1,2,3 or name=a..b:step")
        if "=" in token:
            name, _, token = token.partition("=")
            name = name.strip()
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ConfigError(f"--grid: {name!r} is not a parameter name")
            if name in grid:
                raise ConfigError(f"--grid: {name} is given twice")
            grid[name] = []
        elif name is None:
            raise ConfigError(f"--grid {text!r}: start with name=values, e.g. rsi_len=7..21:7")
        m = _RANGE.match(token)
        if m:
            lo, hi = _number(m.group(1), name), _number(m.group(2), name)
            step = _number(m.group(3), name) if m.group(3) else 1
            if not step > 0 or hi < lo:
                raise ConfigError(f"--grid: {name}={token}: a range needs low <= high and a positive step")
            count = int(np.floor((hi - lo) / step + 1e-9)) + 1
            if count > 10_000:
                raise ConfigError(f"--grid: {name}={token} has {count:,} values; at most 10,000")
            values = [lo + i * step for i in range(count)]
            if all(isinstance(x, int) for x in (lo, hi, step)):
                values = [int(v) for v in values]
            else:
                values = [round(float(v), 12) for v in values]
            grid[name] += values
        else:
            grid[name].append(_number(token, name))
    for k, v in grid.items():
        if len(set(v)) != len(v):
            raise ConfigError(f"--grid: {k} repeats a value: {v}")
    return grid


def combinations(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid, the last name varying fastest."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def parse_span(text: str, flag: str) -> int:
    """``30d``, ``12h``, ``2w`` -> ns."""
    try:
        return parse_timeframe(text)
    except ConfigError as e:
        raise ConfigError(f"{flag} {text}: {e}") from None


def walk_forward(t0: int, t1: int, train: int, test: int) -> list[tuple[int, int, int, int]]:
    """Rolling (train_start, train_end, test_start, test_end) windows over [t0, t1), stepping by ``test``."""
    windows = []
    start = t0
    while start + train + test <= t1:
        windows.append((start, start + train, start + train, start + train + test))
        start += test
    return windows


def split_by_market(inputs: list) -> dict[str, list]:
    """Each market's rows of every input, as inputs of their own (a task sees one market)."""
    out: dict[str, list] = {}
    for b in inputs:
        names = np.array(b.markets, dtype=object)[b.market]
        for name in sorted(set(names.tolist())):
            out.setdefault(name, []).append(b.take(np.flatnonzero(names == name)))
    return out


def span_of(inputs: list) -> tuple[int, int]:
    lo, hi = [], []
    for b in inputs:
        if isinstance(b, CandleBatch) and len(b):
            lo.append(int(b.open_ts.min()))
            hi.append(int(b.close_ts.max()))
        elif isinstance(b, TradeBatch) and len(b):
            lo.append(int(b.ts.min()))
            hi.append(int(b.ts.max()) + 1)
    if not lo:
        raise ConfigError("the inputs hold no rows")
    return min(lo), max(hi)


@dataclass(frozen=True)
class Task:
    """One backtest of a sweep: a combination on one market over one window."""

    combo: int  # index into the combinations
    params: tuple  # (name, value) pairs
    market: str
    phase: str  # "full", "in_sample" or "out_of_sample"
    window: int  # walk-forward window index, -1 for full
    start: int | None
    end: int | None


def tasks_for(combos: list[dict], markets: list[str], windows: list[tuple] | None) -> list[Task]:
    out = []
    for c, params in enumerate(combos):
        p = tuple(params.items())
        for market in markets:
            if not windows:
                out.append(Task(c, p, market, "full", -1, None, None))
                continue
            for w, (a, b, t0, t1) in enumerate(windows):
                out.append(Task(c, p, market, "in_sample", w, a, b))
                out.append(Task(c, p, market, "out_of_sample", w, t0, t1))
    return out


def run_task(task: Task, inputs: list, strategy: str, settings: BacktestSettings, timeframe: str | None,
             engine: str) -> dict:
    """One task's result row: parameters, market, phase, window and the portfolio metrics."""
    result = run_backtest(inputs, strategy, dict(task.params), settings, timeframe, engine, start=task.start,
                          end=task.end)
    p = result.metrics["portfolio"]
    row = {"combo": task.combo, **{f"p_{k}": v for k, v in task.params}, "market": task.market,
           "phase": task.phase, "window": task.window, "start_ts": task.start, "end_ts": task.end,
           "bars": len(result.bars)}
    for k in ROW_METRICS:
        v = p.get(k)
        row[k] = float("nan") if v is None else float(v)
    row["buy_and_hold_return"] = result.metrics["benchmark"].get("total_return")
    return row


def rank(rows: list[dict], by: str = "sharpe") -> list[dict]:
    """Combinations by their mean ``by`` over markets (full-period rows), best first."""
    groups: dict[int, list[dict]] = {}
    for r in rows:
        if r["phase"] == "full":
            groups.setdefault(r["combo"], []).append(r)
    table = []
    for combo, rs in groups.items():
        entry = {k: v for k, v in rs[0].items() if k.startswith("p_")}
        entry["combo"] = combo
        for k in ("sharpe", "total_return", "max_drawdown", "win_rate", "profit_factor", "trades"):
            vals = np.array([r[k] for r in rs], float)
            entry[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
        entry["markets"] = len(rs)
        table.append(entry)
    return sorted(table, key=lambda e: _key(e, by))


def _key(e: dict, by: str) -> tuple:
    v = e.get(by, float("nan"))
    tr = e.get("total_return", float("nan"))
    return (-(v if v == v else -np.inf), -(tr if tr == tr else -np.inf), e["combo"])


def walk_forward_table(rows: list[dict], by: str = "sharpe") -> list[dict]:
    """Per window: the best combination in sample (mean ``by`` over markets) and its out-of-sample result."""
    out = []
    windows = sorted({r["window"] for r in rows if r["window"] >= 0})
    for w in windows:
        def summary(phase):
            groups: dict[int, list] = {}
            for r in rows:
                if r["window"] == w and r["phase"] == phase:
                    groups.setdefault(r["combo"], []).append(r)
            return {c: {k: float(np.nanmean([x[k] for x in rs])) if np.isfinite([x[k] for x in rs]).any()
                        else float("nan") for k in ("sharpe", "total_return", "max_drawdown", "trades")}
                    | {"params": {k: v for k, v in rs[0].items() if k.startswith("p_")}, "combo": c,
                       "start_ts": rs[0]["start_ts"], "end_ts": rs[0]["end_ts"]}
                    for c, rs in groups.items()}
        ins, oos = summary("in_sample"), summary("out_of_sample")
        if not ins:
            continue
        best = sorted(ins.values(), key=lambda e: _key(e, by))[0]
        o = oos.get(best["combo"], {})
        out.append({"window": w, "combo": best["combo"], **best["params"],
                    "train_start": best["start_ts"], "test_start": o.get("start_ts"), "test_end": o.get("end_ts"),
                    "in_sample_sharpe": best["sharpe"], "in_sample_return": best["total_return"],
                    "out_of_sample_sharpe": o.get("sharpe", float("nan")),
                    "out_of_sample_return": o.get("total_return", float("nan")),
                    "out_of_sample_max_drawdown": o.get("max_drawdown", float("nan"))})
    return out
