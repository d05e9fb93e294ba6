"""Run every benchmark and print figures, targets and ratios against references measured in the same run.

    python -m benchmarks                 # all sections
    python -m benchmarks throughput      # one or more of: throughput latency memory indicators streaming structure storage http feed venues backtest ml
"""

from __future__ import annotations

import importlib
import sys
import time

SECTIONS = {
    "throughput": "benchmarks.throughput",
    "latency": "benchmarks.latency",
    "memory": "benchmarks.memory",
    "indicators": "benchmarks.indicators_vs_talib",
    "streaming": "benchmarks.streaming_vs_talipp",
    "structure": "benchmarks.structure_vs_smc",
    "storage": "benchmarks.storage_writes",
    "http": "benchmarks.api_http",
    "feed": "benchmarks.feed_fanout",
    "venues": "benchmarks.venue_parsing",
    "backtest": "benchmarks.backtest",
    "rl": "benchmarks.rl",
    "ml": "benchmarks.ml",
}


def main(argv: list[str]) -> int:
    chosen = argv or list(SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    for name in chosen:
        print(f"\n=== {name} ===", flush=True)
        importlib.import_module(SECTIONS[name]).main()
    print(f"\nall benchmarks took {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
