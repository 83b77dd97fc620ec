"""The one timing harness of the benchmarks: systems take turns, round after round, so machine
drift (this machine is shared and noisy) lands on all of them alike."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np


def alternating_rounds(
    runs: dict[str, Callable[[], list[float]]], rounds: int, pairs_per_round: dict[str, int], log=print
) -> dict[str, dict]:
    """Calls every run once per round, in turn. A run serves its share of the workload and
    returns the latency of each request it made. Returns per run: every latency, and the
    pairs/s of each round (pairs_per_round[run] / the round's wall time)."""
    results = {name: {"latencies_s": [], "pairs_per_s": []} for name in runs}
    for number in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            latencies = run()
            wall = time.perf_counter() - started
            results[name]["latencies_s"] += latencies
            results[name]["pairs_per_s"].append(pairs_per_round[name] / wall)
            log(f"round {number + 1}: {name}: {results[name]['pairs_per_s'][-1]:.1f} pairs/s")
    return results


def one_after_another(call: Callable, workload) -> Callable[[], list[float]]:
    """A run that serves every workload request with `call(request)`, one after another,
    after one untimed warm-up request."""
    call(workload[0])

    def run() -> list[float]:
        latencies = []
        for request in workload:
            started = time.perf_counter()
            call(request)
            latencies.append(time.perf_counter() - started)
        return latencies

    return run


def pairs_per_s(results: dict[str, dict]) -> dict[str, float]:
    """All pairs of all rounds over all their time, per run."""
    return {
        name: round(len(r["pairs_per_s"]) / sum(1 / value for value in r["pairs_per_s"]), 1)
        for name, r in results.items()
    }


def tail_percentiles(values, digits: int = 2) -> dict:
    """p50, p95, p99 and max of some latencies. A p99 of fewer than 100 samples would just be
    their maximum: it is reported as None, beside the max."""
    values = np.asarray(values, dtype=float)
    pick = lambda q: round(float(np.percentile(values, q)), digits)  # noqa: E731
    return {"p50": pick(50), "p95": pick(95), "p99": pick(99) if len(values) >= 100 else None,
            "max": round(float(values.max()), digits)}


def latency_summary(result: dict) -> dict:
    """One run's latency percentiles (ms) and its median pairs/s over rounds."""
    milliseconds = np.array(result["latencies_s"]) * 1000
    return {
        "latency_samples": len(milliseconds),
        "pairs_per_s": round(statistics.median(result["pairs_per_s"]), 1),
        **{f"{name}_ms": value for name, value in tail_percentiles(milliseconds).items()},
    }
