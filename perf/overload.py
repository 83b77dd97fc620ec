"""Overload figures: admission control (the shipped defaults) against the old defaults, side by
side in one run, on offered load beyond capacity.

    .venv/bin/python perf/overload.py [--model DIR] [--precision bf16] [--offered 2,4]
                                      [--duration 120] [--deadline 2] [--candidates 100]
                                      [--only admission] [--deadline-share 0.9] [--results FILE]

Serves a cross-encoder (default: the trained MiniLM from perf/trained_teacher.py, exported at
--precision) on the embedded Triton in two configurations, one after the other:
- "admission": the shipped defaults: admission control at the tokenizer, 2 s default deadline;
- "old defaults": no admission control, requests wait in the queue up to 20 s.
For each: capacity (one client, sequential requests); then, for each --offered multiple of
that capacity, requests of --candidates products arriving at that steady rate for --duration
seconds (open loop), each with a --deadline that travels to Triton: how many are answered, and
within the deadline (goodput), how fast rejections come back, and the recovery afterwards (from
the last arrival until a request is served at normal latency again, and until such a request
was sent; the probes carry normal latency as their deadline, so one that would wait behind the
backlog does not hold up the next). Writes perf/results/overload.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.alternating import tail_percentiles  # noqa: E402
from perf.run_facts import run_facts  # noqa: E402
from perf.trained_teacher import trained_minilm  # noqa: E402
from perf.workload import make_workload  # noqa: E402
from polyrank.client import DeadlineExceededError, OverloadedError, RerankClient  # noqa: E402
from polyrank.export.assets import cache_dir_from  # noqa: E402
from polyrank.export.build_repository import build_repository_unless_current  # noqa: E402
from polyrank.export.config import ExportConfig, ServingConfig  # noqa: E402
from polyrank.server import EmbeddedTritonServer, ServerConfig  # noqa: E402

RESULTS = ROOT / "perf" / "results" / "overload.json"
CONFIGURATIONS = {
    "admission": ServingConfig(),
    "old defaults": ServingConfig(queue_timeout_s=20.0, admission_control=False),
}
NORMAL_LATENCY_FACTOR = 1.5  # recovered: a request served within 1.5 x the idle p50


def percentiles(values):
    """Latency percentiles in seconds (perf/alternating.py's rule), or None without any."""
    return tail_percentiles(values, digits=3) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="cross-encoder checkpoint (default: the trained MiniLM)")
    parser.add_argument("--precision", default="bf16", help="export precision (default bf16: on this CPU the trained MiniLM passes the gate with it)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "overload")
    parser.add_argument("--offered", default="2,4", help="offered loads, multiples of capacity (default 2,4)")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of each offered load (default 120)")
    parser.add_argument("--deadline", type=float, default=2.0, help="deadline of every call (default 2 s)")
    parser.add_argument("--candidates", type=int, default=100, help="products per request (default 100)")
    parser.add_argument("--only", choices=sorted(CONFIGURATIONS), help="run one configuration")
    parser.add_argument("--deadline-share", type=float, default=ServingConfig().admission_deadline_share,
                        help="admission control's share of the deadline (default: the shipped one)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    model = args.model or str(trained_minilm(cache_dir_from(os.environ))[0])
    workload = make_workload(queries=16, candidates=args.candidates, seed=0)
    report = {**run_facts(), "model": model, "precision": args.precision, "deadline_s": args.deadline,
              "candidates_per_request": args.candidates, "configurations": {}}
    if args.only and args.results.exists():  # one configuration again: keep the other's figures
        report["configurations"] = json.loads(args.results.read_text()).get("configurations", {})
    for name, serving in CONFIGURATIONS.items():
        if args.only and name != args.only:
            continue
        if serving.admission_control:
            serving = dataclasses.replace(serving, admission_deadline_share=args.deadline_share)
        config = ExportConfig(model=model, output=args.workdir / name.replace(" ", "-"), max_length=128,
                              precision=args.precision, serving=serving)
        build_repository_unless_current(config)
        result = {"admission_control": serving.admission_control, "queue_timeout_s": serving.queue_timeout_s,
                  "admission_deadline_share": serving.admission_deadline_share if serving.admission_control else None,
                  **measure(config, workload, [float(m) for m in args.offered.split(",")], args.duration, args.deadline)}
        report["configurations"][name] = result
        print(json.dumps({name: result}, indent=2), flush=True)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.results}")
    return 0


def measure(config: ExportConfig, workload, multiples: list[float], duration_s: float, deadline_s: float) -> dict:
    server_config = ServerConfig(repository=config.output, grpc_port=0, http_port=0, metrics_port=0)
    with EmbeddedTritonServer(server_config) as server, RerankClient(
        server.grpc_url, timeout_s=120, max_concurrent_requests=256, retry_deadline_s=0
    ) as client:
        for request in workload[:2]:  # warm-up
            client.score(request.query, list(request.products))
        latencies = []
        for request in workload:
            started = time.perf_counter()
            client.score(request.query, list(request.products))
            latencies.append(time.perf_counter() - started)
        pairs = len(workload[0].products)
        capacity = {"pairs_per_s": round(pairs * len(latencies) / sum(latencies), 1), "latency_s": percentiles(latencies)}
        normal_latency_s = NORMAL_LATENCY_FACTOR * capacity["latency_s"]["p50"]
        loads = []
        for multiple in multiples:
            time.sleep(3)  # let the queues drain between runs
            result = offered_load(client, workload, multiple * capacity["pairs_per_s"] / pairs, duration_s, deadline_s, normal_latency_s)
            result = {"offered_x_capacity": multiple, **result,
                      "goodput_vs_capacity": round(result["goodput_pairs_per_s"] / capacity["pairs_per_s"], 3)}
            loads.append(result)
            print(json.dumps(result), flush=True)
    return {"capacity": capacity, "offered_load": loads}


def offered_load(client, workload, requests_per_s: float, duration_s: float, deadline_s: float, normal_latency_s: float) -> dict:
    """Requests arriving at a steady rate (a new one every 1/rate s whatever the server does),
    each with the deadline; then sequential probes until one is served within normal latency."""
    pairs = len(workload[0].products)

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
        last_arrival = time.perf_counter()
        recovery = recovered_after(client, workload, normal_latency_s, last_arrival) or {"recovery_s": None}
        outcomes = [future.result() for future in futures]
    wall = last_arrival - started
    by_kind = {kind: [t for k, t in outcomes if k == kind] for kind in ("answered", "rejected", "deadline_exceeded")}
    in_time = [t for t in by_kind["answered"] if t <= deadline_s]
    return {
        "requests": len(outcomes), "seconds": round(wall, 1),
        **{kind: len(times) for kind, times in by_kind.items()},
        "answered_within_deadline": len(in_time),
        "answered_latency_s": percentiles(by_kind["answered"]),
        "rejected_latency_s": percentiles(by_kind["rejected"]),
        "deadline_exceeded_latency_s": percentiles(by_kind["deadline_exceeded"]),
        "offered_pairs_per_s": round(pairs * len(outcomes) / wall, 1),
        "answered_pairs_per_s": round(pairs * len(by_kind["answered"]) / wall, 1),
        "goodput_pairs_per_s": round(pairs * len(in_time) / wall, 1),
        **recovery,
    }


def recovered_after(client, workload, normal_latency_s: float, since: float, give_up_s: float = 60.0):
    """Probe requests sent one after another from `since`, each with normal latency as its
    deadline, so a probe that would wait behind the backlog is turned away (or dropped) instead
    of holding up the next probe: {"recovery_s": seconds until one is answered within normal
    latency, "recovered_for_new_requests_s": seconds until that one was sent}, None if none is
    within give_up_s. The first includes the probe's own time (about 1 s for 100 products
    here); the second is when a new request first met normal latency again."""
    while time.perf_counter() - since < give_up_s:
        request = workload[0]
        sent = time.perf_counter()
        try:
            client.score(request.query, list(request.products), deadline_s=normal_latency_s)
        except (OverloadedError, DeadlineExceededError):
            time.sleep(0.05)
            continue
        answered = time.perf_counter()
        if answered - sent <= normal_latency_s:
            return {"recovery_s": round(answered - since, 3), "recovered_for_new_requests_s": round(sent - since, 3)}
    return None


if __name__ == "__main__":
    sys.exit(main())
