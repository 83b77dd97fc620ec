"""How many replicas: N products per request, Q queries/s, p95 within T seconds, from the
per-replica capacity the benchmarks measured on this machine's CPU.

    .venv/bin/python perf/capacity.py [--products 100] [--qps 20] [--p95 1.0] [--utilization 0.7]

Reads perf/results/systems.json (mmBERT-small-shaped) and systems-minilm.json (MiniLM), whose
runs give each polyrank precision's pairs/s and latency through one 2-core replica at one client
and at four. The model (its assumptions, stated in the README):
- a replica serves `capacity` pairs/s (the 4-client figure: the dynamic batcher merging);
- it is run at `utilization` of that, so the queue stays short (with a 2 s deadline, admission
  control rejects what would wait longer: more load than this means rejections, not slowness);
- one request's latency on an idle replica is N / (1-client pairs/s): if that already misses
  the p95 target, no number of replicas of that kind meets it (a faster precision, a smaller
  model or a bigger replica is needed);
- replicas = ceil(N * Q / (capacity * utilization)), and never below 2 (one may be down).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = {"mmBERT-small-shaped": ROOT / "perf/results/systems.json", "MiniLM-L6 (trained)": ROOT / "perf/results/systems-minilm.json"}
MIN_REPLICAS = 2


def replicas_needed(products: int, queries_per_s: float, p95_s: float, single_pairs_per_s: float,
                    loaded_pairs_per_s: float, utilization: float) -> tuple[int | None, float]:
    """(replicas, idle latency of one request); replicas None when one request alone misses p95_s."""
    idle_latency_s = products / single_pairs_per_s
    if idle_latency_s > p95_s:
        return None, idle_latency_s
    replicas = math.ceil(products * queries_per_s / (loaded_pairs_per_s * utilization))
    return max(MIN_REPLICAS, replicas), idle_latency_s


def measured_capacity(path: Path) -> dict[str, tuple[float, float, str]]:
    """{precision: (1-client pairs/s, loaded pairs/s, instruction set)} of polyrank's runs."""
    report = json.loads(path.read_text())
    by_precision: dict[str, list[float]] = {}
    for run in report["runs"]:
        if run["system"].startswith("polyrank-"):
            by_precision.setdefault(run["system"].removeprefix("polyrank-"), []).append(run["pairs_per_s"])
    return {p: (min(values), max(values), report["instruction_set"]) for p, values in by_precision.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100)
    parser.add_argument("--qps", type=float, default=20.0, help="queries per second")
    parser.add_argument("--p95", type=float, default=1.0, help="p95 latency target, seconds")
    parser.add_argument("--utilization", type=float, default=0.7)
    args = parser.parse_args()
    print(f"{args.products} products per request, {args.qps:g} queries/s, p95 <= {args.p95:g} s, replicas run at "
          f"{args.utilization:.0%} of capacity; one replica = 2 CPU cores")
    print("| model | precision | pairs/s, 1 client | pairs/s, loaded | one request, idle | replicas (cores) |")
    print("|---|---|---|---|---|---|")
    for model, path in RESULTS.items():
        for precision, (single, loaded, isa) in measured_capacity(path).items():
            replicas, idle_s = replicas_needed(args.products, args.qps, args.p95, single, loaded, args.utilization)
            verdict = f"{replicas} ({2 * replicas})" if replicas else f"none: one request takes {idle_s:.2f} s"
            print(f"| {model} | {precision} | {single:.0f} | {loaded:.0f} | {idle_s:.2f} s | {verdict} |")
    print(f"(measured on {isa})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
