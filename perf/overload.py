"""Overload figures: capacity, how fast requests beyond it are rejected, and recovery.

    .venv/bin/python perf/overload.py [--model DIR] [--burst 128] [--concurrency 64]

Serves a cross-encoder (default: the trained MiniLM from perf/trained_teacher.py) with the
default bounded scorer queue (32 requests, 20 s queue timeout) on the embedded Triton, then:
1. capacity: one client, sequential 100-product requests, pairs/s and latency;
2. a burst of --burst requests from --concurrency threads at once: how many were accepted or
   rejected (OverloadedError), and their latencies;
3. recovery: after the burst, the time until one request is served again and its latency.
Writes perf/results/overload.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.run_facts import run_facts  # noqa: E402
from perf.trained_teacher import trained_minilm  # noqa: E402
from perf.workload import make_workload  # noqa: E402
from polyrank.client import OverloadedError, RerankClient  # noqa: E402
from polyrank.export.assets import cache_dir_from  # noqa: E402
from polyrank.export.build_repository import build_repository_unless_current  # noqa: E402
from polyrank.export.config import ExportConfig  # noqa: E402
from polyrank.server import EmbeddedTritonServer, ServerConfig  # noqa: E402

RESULTS = ROOT / "perf" / "results" / "overload.json"


def percentiles(values):
    if not values:
        return None
    ordered = sorted(values)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)  # noqa: E731
    return {"p50": pick(0.5), "p95": pick(0.95), "max": round(ordered[-1], 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="cross-encoder checkpoint (default: the trained MiniLM)")
    parser.add_argument("--burst", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "overload")
    args = parser.parse_args()
    model = args.model or str(trained_minilm(cache_dir_from(os.environ))[0])
    config = ExportConfig(model=model, output=args.workdir / "repository", max_length=128)
    build_repository_unless_current(config)
    workload = make_workload(queries=8, candidates=100, seed=0)
    report = {**run_facts(), "model": model, "max_queue_size": config.serving.max_queue_size,
              "queue_timeout_s": config.serving.queue_timeout_s}

    server_config = ServerConfig(repository=config.output, grpc_port=0, http_port=0, metrics_port=0)
    with EmbeddedTritonServer(server_config) as server, RerankClient(
        server.grpc_url, timeout_s=120, max_concurrent_requests=args.concurrency, retry_deadline_s=0
    ) as client:
        client.score(workload[0].query, list(workload[0].products))  # warm-up
        latencies = []
        for request in workload:
            started = time.perf_counter()
            client.score(request.query, list(request.products))
            latencies.append(time.perf_counter() - started)
        report["capacity"] = {"pairs_per_s": round(100 / statistics.mean(latencies), 1),
                              "latency_s": percentiles(latencies)}

        def call(i):
            request = workload[i % len(workload)]
            started = time.perf_counter()
            try:
                client.score(request.query, list(request.products))
                return "accepted", time.perf_counter() - started
            except OverloadedError:
                return "rejected", time.perf_counter() - started

        burst_started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            outcomes = list(pool.map(call, range(args.burst)))
        burst_s = time.perf_counter() - burst_started
        accepted = [t for kind, t in outcomes if kind == "accepted"]
        rejected = [t for kind, t in outcomes if kind == "rejected"]
        report["burst"] = {
            "requests": args.burst, "concurrency": args.concurrency, "seconds": round(burst_s, 2),
            "accepted": len(accepted), "rejected": len(rejected),
            "accepted_latency_s": percentiles(accepted), "rejected_latency_s": percentiles(rejected),
        }
        started = time.perf_counter()
        client.score(workload[0].query, list(workload[0].products))
        report["recovery"] = {"first_request_after_burst_s": round(time.perf_counter() - started, 3)}
    print(json.dumps(report, indent=2))
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
