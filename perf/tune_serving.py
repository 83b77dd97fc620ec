"""Serving settings tried side by side: each setting is its own repository and server,
all loaded at once and measured in alternating rounds at 1 and 4 concurrent clients.

    .venv/bin/python perf/tune_serving.py [--queries 8] [--rounds 2]

Writes perf/results/tuning.json: every setting tried and what it did, as pairs/s and p50
latency relative to the shipped defaults in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.alternating import alternating_rounds  # noqa: E402
from perf.run_facts import run_facts  # noqa: E402
from perf.systems import CANDIDATES, MAX_LENGTH, TritonSystem  # noqa: E402
from perf.workload import make_workload  # noqa: E402
from polyrank.export.assets import cache_dir_from, shaped_model  # noqa: E402
from polyrank.export.build_repository import build_repository_unless_current  # noqa: E402
from polyrank.export.config import ExportConfig, ServingConfig  # noqa: E402

# name -> ExportConfig fields that differ from the shipped defaults
SETTINGS = {
    "defaults (1 scorer x 2 threads, 16 pairs/run, 2 ms scorer queue)": {},
    "2 scorer instances x 1 thread": {"scorer_instances": 2, "intra_op_threads": 1},
    "no scorer queue delay": {"scorer_queue_delay_us": 0},
    "32 pairs per run": {"max_pairs_per_run": 32},
    "2 tokenizer instances": {"tokenizer_instances": 2},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "tuning")
    args = parser.parse_args()
    model = shaped_model(cache_dir_from(os.environ))
    requests = make_workload(queries=args.queries, candidates=CANDIDATES, seed=0)
    systems = {}
    for number, (name, fields) in enumerate(SETTINGS.items()):
        config = ExportConfig(model=model, output=args.workdir / f"setting-{number}", max_length=MAX_LENGTH,
                              serving=ServingConfig(**fields))
        systems[name] = TritonSystem(build_repository_unless_current(config), requests)
    try:
        for system in systems.values():
            system.start()
        calls = {
            (name, concurrency): (lambda s=system, c=concurrency: s.run_round(c))
            for name, system in systems.items()
            for concurrency in system.concurrency_levels
        }
        runs = alternating_rounds(calls, args.rounds, dict.fromkeys(calls, CANDIDATES * len(requests)),
                                  log=lambda line: print(line, flush=True))
    finally:
        for system in systems.values():
            system.stop()

    baseline = next(iter(SETTINGS))
    rows = []
    for (name, concurrency), run in runs.items():
        pairs = statistics.median(run["pairs_per_s"])
        base = statistics.median(runs[(baseline, concurrency)]["pairs_per_s"])
        rows.append({
            "setting": name, "changes": SETTINGS[name], "concurrency": concurrency,
            "pairs_per_s": round(pairs, 1), "vs_defaults": round(pairs / base, 3),
            "p50_ms": round(float(np.percentile(np.array(run["latencies_s"]) * 1000, 50)), 1),
        })
    result = {
        "benchmark": "serving settings, mmBERT-small-shaped fp32 through the embedded Triton",
        **run_facts(),
        "workload": f"{args.queries} x {CANDIDATES}-product requests, {args.rounds} alternating rounds, 1 and 4 clients",
        "results": rows,
    }
    output = ROOT / "perf" / "results" / "tuning.json"
    output.write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        print(json.dumps(row))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
