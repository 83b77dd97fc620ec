"""Length buckets for Triton's native backends (the triton-gpu target): padding efficiency and
how many executions a group of concurrent requests needs, with and without buckets.

    .venv/bin/python perf/length_buckets.py [--concurrent 16] [--buckets 16,32,64,128,256]

A native backend (onnxruntime, tensorrt in NVIDIA's image) merges queued requests into one
execution only if their shapes match apart from the batch dimension: a request padded to its
own longest pair has a width of its own, so nearly every request runs alone. Padded up to a
few bucket widths, requests of similar lengths share a shape and merge, at the cost of some
padding. This counts both on the Locust workload (20-200 candidates per request, multilingual
synthetic products) tokenized with the mmBERT-small tokenizer (max length 256): real tokens /
computed tokens, and the executions (distinct shapes) per group of --concurrent requests, over
many random groups. Pure counting, no timing: the GPU run (issue 13) measures the speed.
Writes perf/results/length_buckets.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.run_facts import run_facts  # noqa: E402
from perf.workload import make_workload  # noqa: E402

MAX_LENGTH = 256
GROUPS = 500


def main() -> int:
    from polyrank.export.assets import cache_dir_from, shaped_model
    from polyrank.model_repository.pair_encoding import PairEncoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrent", type=int, default=16)
    parser.add_argument("--buckets", default="16,32,64,128,256")
    args = parser.parse_args()
    buckets = sorted(int(b) for b in args.buckets.split(","))
    encoder = PairEncoder.from_file(str(Path(shaped_model(cache_dir_from(os.environ))) / "tokenizer.json"), max_length=MAX_LENGTH)
    rng = random.Random(0)
    requests = []  # (rows, longest pair) per request
    for request in make_workload(queries=64, candidates=200, seed=1):
        products = list(request.products[: rng.randint(20, 200)])
        lengths = [len(e.ids) for e in encoder.encode([request.query] * len(products), products)]
        requests.append((lengths, max(lengths)))

    def bucket(width: int) -> int:
        return next((b for b in buckets if b >= width), width)

    real = sum(sum(lengths) for lengths, _ in requests)
    own = sum(len(lengths) * longest for lengths, longest in requests)
    bucketed = sum(len(lengths) * bucket(longest) for lengths, longest in requests)
    groups = [rng.sample(requests, args.concurrent) for _ in range(GROUPS)]
    report = {
        **run_facts(), "tokenizer": "mmBERT-small (Gemma 2)", "max_length": MAX_LENGTH, "buckets": buckets,
        "requests": len(requests), "concurrent": args.concurrent,
        "padding_efficiency": {"own_longest": round(real / own, 3), "buckets": round(real / bucketed, 3)},
        "executions_per_group": {
            "own_longest": statistics.mean(len({longest for _, longest in g}) for g in groups),
            "buckets": statistics.mean(len({bucket(longest) for _, longest in g}) for g in groups),
        },
        "widths_used": sorted({bucket(longest) for _, longest in requests}),
    }
    out = ROOT / "perf" / "results" / "length_buckets.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
