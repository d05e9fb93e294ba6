"""Signal operator: evaluates a strategy's rules on every closed bar, vectorised over a batch."""

from __future__ import annotations

import numpy as np

from engine.ids import stable_ids
from engine.keyed import SlotMap, row_keys
from engine.operator import pack_state, unpack_state
from engine.signals.mtf import HigherTimeframeView
from engine.signals.rules import Condition, Strategy
from engine.structure.events import timeframe_codes
from schemas.batches import FeatureBatch, RuleText, SignalBatch
from schemas.errors import ConfigError
from schemas.records import Signal
from schemas.timeframes import parse_timeframe

CANDLE_FIELDS = ("open", "high", "low", "close", "volume", "vwap", "buy_volume", "sell_volume")
OPERATOR_VERSIONS = {"candles": "1", "indicators": "1", "structure": "2", "fvg": "1", "order_blocks": "1",
                     "liquidity": "1", "risk": "1", "signals": "2"}
# risk columns copied onto each signal (what the risk operator computed for the firing bar)
RISK_FIELDS = ("vol_cc", "vol_parkinson", "var_95", "cvar_95", "var_99", "cvar_99", "drawdown", "stop_distance",
               "risk_volatility", "risk_var", "risk_drawdown", "risk_stop")


class SignalOperator:
    """Keyed by (market, timeframe): remembers each column's previous value to detect crosses."""

    name = "signals"
    version = "2"

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.columns = sorted(strategy.columns())
        self.col_index = {c: i for i, c in enumerate(self.columns)}
        self.keys = SlotMap()
        self.prev = np.full((0, len(self.columns)), np.nan)
        self.bars = np.zeros(0, np.int64)  # live bars seen per key (for cool-downs)
        self.last_fire = np.full((0, len(strategy.rules)), NEVER, np.int64)  # bar number of last signal
        self._tf_filter = {r.name: {parse_timeframe(t) for t in r.timeframes} for r in strategy.rules}
        self.versions = {**OPERATOR_VERSIONS, "strategy": f"{strategy.name}@{strategy.version}"}
        self.higher = HigherTimeframeView([c for c in self.columns if "@" in c])
        self._rule_names = [r.name for r in strategy.rules]
        self._rule_text = tuple(RuleText(r.name, r.side, r.strength, tuple((w.left, w.op, w.right) for w in r.when))
                                for r in strategy.rules)

    def _matrix(self, batch: FeatureBatch) -> np.ndarray:
        c = batch.candles
        higher = self.higher.lookup(batch)
        cols = []
        for name in self.columns:
            if name in higher:
                cols.append(higher[name])
            elif name in batch.names:
                cols.append(batch.column(name))
            elif name in CANDLE_FIELDS:
                cols.append(getattr(c, name))
            else:
                raise ConfigError(f"strategy {self.strategy.name!r} reads column {name!r}, which the pipeline "
                                  f"does not compute; available: {', '.join(batch.names + list(CANDLE_FIELDS))}")
        return np.column_stack(cols) if cols else np.empty((len(c), 0))

    def update(self, batch: FeatureBatch) -> SignalBatch:
        c = batch.candles
        live = np.flatnonzero(~c.gap)
        if not len(live):
            return SignalBatch.empty(c.markets)
        cur = self._matrix(batch)[live]
        keys, inverse = row_keys(c.markets, c.market, c.tf)
        slots = self.keys.lookup(keys)[inverse][live]
        if slots.max() >= len(self.prev):
            self._grow(max(int(slots.max()) + 1, 2 * len(self.prev), 8))
        # previous value of each row: the row before it of the same key, else the stored state
        order = np.argsort(slots, kind="stable")
        s_sorted = slots[order]
        first = np.r_[True, s_sorted[1:] != s_sorted[:-1]]
        prev_sorted = np.empty_like(cur)
        prev_sorted[1:] = cur[order][:-1]
        prev_sorted[first] = self.prev[s_sorted[first]]
        prev = np.empty_like(cur)
        prev[order] = prev_sorted
        last = np.r_[s_sorted[1:] != s_sorted[:-1], True]
        self.prev[s_sorted[last]] = cur[order][last]
        # bar number of each row within its key: bars seen before this batch + rank in the batch
        starts = np.flatnonzero(first)
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        bar_no = np.empty(len(order), np.int64)
        bar_no[order] = self.bars[s_sorted] + rank
        self.bars[s_sorted[last]] += rank[last] + 1
        return self._fire(batch, live, cur, prev, slots, bar_no)

    def _grow(self, capacity: int) -> None:
        n = len(self.prev)
        grown = np.full((capacity, len(self.columns)), np.nan)
        grown[:n] = self.prev
        self.prev = grown
        self.bars = np.r_[self.bars, np.zeros(capacity - n, np.int64)]
        self.last_fire = np.vstack([self.last_fire, np.full((capacity - n, len(self.strategy.rules)), NEVER)])

    def _eval(self, cond: Condition, cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
        a, pa = cur[:, self.col_index[cond.left]], prev[:, self.col_index[cond.left]]
        if isinstance(cond.right, str):
            b, pb = cur[:, self.col_index[cond.right]], prev[:, self.col_index[cond.right]]
        else:
            b = pb = np.float64(cond.right)
        with np.errstate(invalid="ignore"):
            return {">": lambda: a > b, "<": lambda: a < b, ">=": lambda: a >= b, "<=": lambda: a <= b,
                    "crosses_above": lambda: (pa <= pb) & (a > b),
                    "crosses_below": lambda: (pa >= pb) & (a < b)}[cond.op]()

    def _fire(self, batch: FeatureBatch, live: np.ndarray, cur: np.ndarray, prev: np.ndarray, slots: np.ndarray,
              bar_no: np.ndarray) -> SignalBatch:
        c = batch.candles
        risk_cols = [(f, batch.names.index(f)) for f in RISK_FIELDS if f in batch.names]
        score_col = batch.names.index("risk_score") if "risk_score" in batch.names else None
        # a signal needs its risk assessment: none fire while the risk window is still filling
        ready = np.isfinite(batch.values[live, score_col]) if score_col is not None else np.ones(len(live), bool)
        fired_rows, fired_rules = [], []
        for k, r in enumerate(self.strategy.rules):
            hit = ready.copy()
            tfs = self._tf_filter[r.name]
            if tfs:
                hit &= np.isin(c.tf[live], list(tfs))
            for cond in r.when:
                hit &= self._eval(cond, cur, prev)
            for j in np.flatnonzero(hit).tolist():
                # cool-down: rows of a key come in time order, so earlier firings are already recorded
                if bar_no[j] - self.last_fire[slots[j], k] <= r.cooldown_bars:
                    continue
                self.last_fire[slots[j], k] = bar_no[j]
                fired_rows.append(j)
                fired_rules.append(k)
        if not fired_rows:
            return SignalBatch.empty(c.markets)
        j = np.array(fired_rows, np.int64)
        rule = np.array(fired_rules, np.int16)
        rows = live[j]
        return self._signals(batch, cur[j], rows, rule, risk_cols, score_col)

    def _signals(self, batch: FeatureBatch, cur: np.ndarray, rows: np.ndarray, rule: np.ndarray,
                 risk_cols: list, score_col: int | None) -> SignalBatch:
        """The fired signals as columns, in canonical order (ids as ``stable_id(market, tf, ts, rule)``)."""
        c = batch.candles
        rules = self.strategy.rules
        n = len(rows)
        price = c.close[rows]
        ts = c.close_ts[rows]
        sign = np.where(np.array([r.side == "buy" for r in rules])[rule], 1.0, -1.0)
        atr_col = np.array([self.col_index.get(r.atr, -1) for r in rules])[rule]
        atr = np.where(atr_col >= 0, cur[np.arange(n), atr_col], np.nan)
        finite_atr = np.isfinite(atr)
        stop_atr = np.array([r.stop_atr or np.nan for r in rules])[rule]
        stop = np.where(np.isfinite(stop_atr) & finite_atr, price - sign * stop_atr * atr, np.nan)
        multiples = [((r.target_atr,) if r.target_atr else ()) + r.more_targets_atr for r in rules]
        width = max((len(m) for m in multiples), default=0)
        table = np.full((len(rules), max(width, 1)), np.nan)
        for k, m in enumerate(multiples):
            table[k, :len(m)] = m
        targets = price[:, None] + (sign[:, None] * table[rule]) * atr[:, None]
        targets[~finite_atr] = np.nan
        n_cond = max(len(r.when) for r in rules)
        operands = np.full((n, 2 * n_cond), np.nan)
        for k, r in enumerate(rules):
            mine = rule == k
            for i, cond in enumerate(r.when):
                operands[mine, 2 * i] = cur[mine, self.col_index[cond.left]]
                operands[mine, 2 * i + 1] = cur[mine, self.col_index[cond.right]] if isinstance(cond.right, str) \
                    else cond.right
        score = batch.values[rows, score_col] if score_col is not None else np.full(n, np.nan)
        score = np.where(np.isfinite(score), score, np.nan)
        limit = self.strategy.max_risk_score
        risk_limit = score > limit if limit is not None else np.zeros(n, bool)
        risk = batch.values[rows][:, [i for _, i in risk_cols]] if risk_cols else np.empty((n, 0))
        tf_code, labels = timeframe_codes(c.tf[rows])
        market = c.market[rows]
        ids = stable_ids((market, c.markets), (tf_code, labels), ts, (rule, self._rule_names))
        out = SignalBatch(c.markets, market.astype(np.int32), c.tf[rows], ts, rule, price, stop, targets, operands,
                          score, risk, risk_limit, ids, self._rule_text, tuple(f for f, _ in risk_cols), self.versions)
        return out.take(out.order())

    def flush(self) -> None:
        return None

    def snapshot(self) -> bytes:
        return pack_state(self, {"strategy": self.strategy, "keys": self.keys.state(), "prev": self.prev.copy(),
                                 "bars": self.bars.copy(), "last_fire": self.last_fire.copy(),
                                 "higher": self.higher.state()})

    def restore(self, data: bytes) -> None:
        state = unpack_state(self, data)
        self.__init__(state["strategy"])
        self.keys.load(state["keys"])
        self.prev = state["prev"].copy()
        self.bars = state["bars"].copy()
        self.last_fire = state["last_fire"].copy()
        self.higher.load(state["higher"])

    def reset(self) -> None:
        self.__init__(self.strategy)


NEVER = -(2**62)  # "no signal yet" for cool-down bookkeeping


def signal_order(s: Signal) -> tuple:
    """The canonical order of a signal stream: by time, market, kind (then timeframe and id)."""
    return (s.ts, s.market, s.kind, s.timeframe, s.id)
