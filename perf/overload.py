"""Overload figures: capacity, how fast requests beyond it are rejected, and recovery.

    .venv/bin/python perf/overload.py [--model DIR] [--burst 128] [--concurrency 64]
                                      [--offered 2,4] [--duration 120] [--deadline 2]

Serves a cross-encoder (default: the trained MiniLM from perf/trained_teacher.py) with the
default bounded scorer queue (32 requests, 20 s queue timeout) on the embedded Triton, then:
1. capacity: one client, sequential 100-product requests, pairs/s and latency;
2. a burst of --burst requests from --concurrency threads at once: how many were accepted or
   rejected (OverloadedError), and their latencies;
3. recovery: after the burst, the time until one request is served again and its latency;
4. offered load: requests arriving at a steady rate of --offered x capacity for --duration
   seconds each, with calls that carry a --deadline (a client deadline that travels to
   Triton) and, side by side, with today's defaults (no deadline): what is answered within
   the deadline (goodput), how fast the rest fail, and the first request afterwards.
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
from polyrank.client import DeadlineExceededError, OverloadedError, RerankClient  # noqa: E402
from polyrank.export.assets import cache_dir_from  # noqa: E402
from polyrank.export.build_repository import build_repository_unless_current  # noqa: E402
from polyrank.export.config import ExportConfig, ServingConfig  # noqa: E402
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
    parser.add_argument("--offered", default="2,4", help="offered loads, multiples of capacity (default 2,4)")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of each offered load (default 120)")
    parser.add_argument("--deadline", type=float, default=2.0, help="deadline of each call in the offered load (default 2 s)")
    parser.add_argument("--max-queue-size", type=int, default=ServingConfig.max_queue_size,
                        help="the scorer's queue bound (default: the shipped 32)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    model = args.model or str(trained_minilm(cache_dir_from(os.environ))[0])
    serving = ServingConfig(max_queue_size=args.max_queue_size)
    output = args.workdir / ("repository" if args.max_queue_size == ServingConfig.max_queue_size else f"repository-queue{args.max_queue_size}")
    config = ExportConfig(model=model, output=output, max_length=128, serving=serving)
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

        capacity_requests_per_s = report["capacity"]["pairs_per_s"] / 100
        report["offered_load"] = []
        # as many requests in flight as the load brings: none waits in this client's own pool
        open_loop = RerankClient(server.grpc_url, timeout_s=120, max_concurrent_requests=256, retry_deadline_s=0)
        for multiple in [float(m) for m in args.offered.split(",")]:
            for deadline in (args.deadline, None):
                time.sleep(5)  # let the queues drain between runs
                result = offered_load(open_loop, workload, multiple * capacity_requests_per_s, args.duration, deadline, args.deadline)
                result |= {"offered_x_capacity": multiple, "deadline_s": deadline,
                           "goodput_vs_capacity": round(result["goodput_pairs_per_s"] / report["capacity"]["pairs_per_s"], 2)}
                report["offered_load"].append(result)
                print(json.dumps(result), flush=True)
        open_loop.close()
    print(json.dumps(report, indent=2))
    args.results.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.results}")
    return 0


def offered_load(client, workload, requests_per_s: float, duration_s: float, deadline_s, budget_s: float) -> dict:
    """Requests arriving at a steady rate (open loop: a new one every 1/rate s whatever the
    server does), each of 100 products, with `deadline_s` (None: none); then one request on
    the quiet server (recovery). Goodput counts answers within budget_s, with or without a
    deadline, so both runs are judged alike."""

    def call(request):
        started = time.perf_counter()
        try:
            client.score(request.query, list(request.products), deadline_s=deadline_s)
            outcome = "answered"
        except OverloadedError:
            outcome = "rejected"
        except DeadlineExceededError:
            outcome = "deadline_exceeded"
        return outcome, time.perf_counter() - started

    futures, started = [], time.perf_counter()
    with ThreadPoolExecutor(256) as pool:
        for number in range(int(duration_s * requests_per_s)):
            time.sleep(max(0.0, started + number / requests_per_s - time.perf_counter()))
            futures.append(pool.submit(call, workload[number % len(workload)]))
        outcomes = [future.result() for future in futures]
    wall = time.perf_counter() - started
    after = time.perf_counter()
    client.score(workload[0].query, list(workload[0].products))
    recovery = time.perf_counter() - after
    by_kind = {kind: [t for k, t in outcomes if k == kind] for kind in ("answered", "rejected", "deadline_exceeded")}
    in_time = [t for t in by_kind["answered"] if t <= budget_s]
    failed = by_kind["rejected"] + by_kind["deadline_exceeded"]
    return {
        "requests": len(outcomes), "seconds": round(wall, 1),
        **{kind: len(times) for kind, times in by_kind.items()},
        "answered_latency_s": percentiles_99(by_kind["answered"]),
        "failed_latency_s": percentiles_99(failed),
        "answered_pairs_per_s": round(100 * len(by_kind["answered"]) / wall, 1),
        "goodput_pairs_per_s": round(100 * len(in_time) / wall, 1),
        "recovery_first_request_s": round(recovery, 3),
    }


def percentiles_99(values):
    summary = percentiles(values)
    if summary is not None:
        ordered = sorted(values)
        summary["p99"] = round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3) if len(values) >= 100 else None
    return summary


if __name__ == "__main__":
    sys.exit(main())
