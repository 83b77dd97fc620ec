"""The HTTP API's cost: POST /v2/rerank through `polyrank gateway` vs polyrank's gRPC client,
against the same embedded Triton, in one run with alternating rounds.

Two servers on the same repository (default: the mmBERT-small-shaped model, fp32):
  scoring   no response cache: every request is scored (1, 4 and 16 concurrent clients)
  cached    Triton's response cache on and warmed: no scoring at all, so the latency left is
            the transport's (gRPC client vs HTTP + gateway + gRPC), which isolates what the
            HTTP layer adds; this is also the hit speed-up of the response cache.
Each request is one query with 100 products (perf/workload.py). The gateway runs as its own
process (`polyrank gateway`), as it would in front of a Triton.

    .venv/bin/python perf/bench_http.py [--queries 16] [--rounds 2] [--precision fp32]

Writes perf/results/http.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.alternating import alternating_rounds, latency_summary  # noqa: E402
from perf.run_facts import run_facts  # noqa: E402
from perf.systems import CANDIDATES, MAX_LENGTH, concurrent_calls  # noqa: E402
from perf.workload import make_workload  # noqa: E402
from polyrank.client import RerankClient  # noqa: E402
from polyrank.export.assets import cache_dir_from, shaped_model  # noqa: E402
from polyrank.export.build_repository import build_repository_unless_current  # noqa: E402
from polyrank.export.config import ExportConfig, ServingConfig  # noqa: E402
from polyrank.server import EmbeddedTritonServer, ServerConfig, free_port  # noqa: E402

RESULTS = ROOT / "perf" / "results"
CONCURRENCY = (1, 4, 16)


class Gateway:
    """`polyrank gateway` in its own process, in front of one Triton; one keep-alive HTTP
    session per client thread."""

    def __init__(self, triton_url: str):
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "polyrank.cli", "gateway", "--triton-url", triton_url, "--port", str(self.port), "--timeout-s", "600"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self._sessions = threading.local()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError(f"the gateway did not start: {self.process.stderr.read() if self.process.poll() is not None else 'timeout'}")

    def rerank(self, request) -> list[dict]:
        session = getattr(self._sessions, "session", None) or requests.Session()
        self._sessions.session = session
        body = {"model": "rerank", "query": request.query, "documents": list(request.products)}
        response = session.post(f"{self.url}/v2/rerank", json=body, timeout=600)
        response.raise_for_status()
        return response.json()["results"]

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=16, help="100-product requests per run per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench-http")
    args = parser.parse_args()

    model = shaped_model(cache_dir_from(os.environ))
    # 16 clients queue more than the default 20 s of work on 2 cores: this measures throughput,
    # not overload (perf/overload.py does), so nothing may time out in the queue.
    repository = build_repository_unless_current(ExportConfig(
        model=str(model), output=args.workdir / f"repository-{args.precision}", max_length=MAX_LENGTH,
        precision=args.precision, force=True, allow_f32_fallback=True,
        serving=ServingConfig(max_queue_size=64, queue_timeout_s=600),
    ))
    workload = make_workload(queries=args.queries, candidates=CANDIDATES, seed=0)
    servers = {
        "scoring": EmbeddedTritonServer(ServerConfig(repository=repository, grpc_port=0, http_port=0, metrics_port=0)),
        "cached": EmbeddedTritonServer(ServerConfig(repository=repository, grpc_port=0, http_port=0, metrics_port=0, response_cache_mb=256)),
    }
    gateways, clients = {}, {}
    try:
        for name, server in servers.items():
            server.start()
            gateways[name] = Gateway(server.grpc_url)
            clients[name] = RerankClient(server.grpc_url, timeout_s=600, max_concurrent_requests=16)
        grpc_scores = clients["scoring"].score(workload[0].query, list(workload[0].products))
        http_scores = {r["index"]: r["relevance_score"] for r in gateways["scoring"].rerank(workload[0])}
        agreement = max(abs(http_scores[i] - 1 / (1 + np.exp(-float(s)))) for i, s in enumerate(grpc_scores))
        for request in workload:  # warm the cache: every later request of the cached runs is a hit
            clients["cached"].score(request.query, list(request.products))
        gateways["cached"].rerank(workload[0])

        def grpc_run(name, concurrency):
            return lambda: concurrent_calls(lambda r: clients[name].rerank(r.query, list(r.products)), workload, concurrency)

        def http_run(name, concurrency):
            return lambda: concurrent_calls(gateways[name].rerank, workload, concurrency)

        runs = {}
        for concurrency in CONCURRENCY:
            runs[f"grpc@{concurrency}"] = grpc_run("scoring", concurrency)
            runs[f"http@{concurrency}"] = http_run("scoring", concurrency)
        runs["grpc-cached@1"] = grpc_run("cached", 1)
        runs["http-cached@1"] = http_run("cached", 1)
        cached_rounds = 20  # cache hits take a millisecond: more rounds, for enough samples
        timed = alternating_rounds({k: v for k, v in runs.items() if "cached" not in k}, args.rounds,
                                   dict.fromkeys(runs, CANDIDATES * len(workload)), log=lambda line: print(line, flush=True))
        timed |= alternating_rounds({k: v for k, v in runs.items() if "cached" in k}, cached_rounds,
                                    dict.fromkeys(runs, CANDIDATES * len(workload)), log=lambda line: None)
    finally:
        for client in clients.values():
            client.close()
        for gateway in gateways.values():
            gateway.stop()
        for server in servers.values():
            server.stop()

    table = {name: latency_summary(result) for name, result in timed.items()}
    ratios = {
        **{f"http vs grpc pairs/s, {c} clients": round(table[f"http@{c}"]["pairs_per_s"] / table[f"grpc@{c}"]["pairs_per_s"], 3) for c in CONCURRENCY},
        **{f"http minus grpc p50 ms, {c} clients": round(table[f"http@{c}"]["p50_ms"] - table[f"grpc@{c}"]["p50_ms"], 2) for c in CONCURRENCY},
        "http minus grpc p50 ms, cache hits (transport only)": round(table["http-cached@1"]["p50_ms"] - table["grpc-cached@1"]["p50_ms"], 2),
        "response cache hit speed-up, grpc p50 (scored / hit)": round(table["grpc@1"]["p50_ms"] / table["grpc-cached@1"]["p50_ms"], 1),
    }
    result = {
        "benchmark": "HTTP API (polyrank gateway, POST /v2/rerank) vs the gRPC client, same Triton",
        **run_facts(),
        "model": f"mmBERT-small-shaped ModernBERT cross-encoder, random weights, {args.precision}, max length {MAX_LENGTH}",
        "workload": f"{args.queries} queries x {CANDIDATES} products (perf/workload.py, seed 0); "
                    f"{args.rounds} alternating rounds scored, {cached_rounds} of cache hits",
        "max_relevance_score_difference_http_vs_sigmoid_grpc": float(agreement),
        "ratios": ratios,
        "runs": table,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "http.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(ratios, indent=2))
    print(f"wrote {RESULTS / 'http.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
