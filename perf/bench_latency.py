"""Latency of one 100-product rerank: polyrank through the embedded Triton vs in-process
ONNX Runtime on the same ONNX file, side by side in one run (rounds alternate).

Model: mmBERT-small-shaped (random weights; speed does not depend on them), exact Gemma-2
tokenizer, max length 256. Workload: perf/workload.py (fixed seed, 8 languages).
In-process ONNX Runtime uses the best simple recipe (PEERS.md): pairs sorted by token
length, batches of 16, 2 intra-op threads.

    .venv/bin/python perf/bench_latency.py [--queries 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perf.workload import make_workload  # noqa: E402
from polyrank.client import RerankClient  # noqa: E402
from polyrank.export.assets import cache_dir_from, shaped_model  # noqa: E402
from polyrank.export.build_repository import build_repository_unless_current  # noqa: E402
from polyrank.export.config import ExportConfig  # noqa: E402
from polyrank.model_repository.pair_encoding import PairEncoder  # noqa: E402
from polyrank.server import EmbeddedTritonServer, ServerConfig  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MAX_LENGTH = 256


class InProcessOnnxRuntime:
    """The serving-overhead ceiling: same graph, same encoder, length-sorted batches of 16."""

    def __init__(self, onnx_path: Path, encoder: PairEncoder, batch: int = 16, threads: int = 2):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.encoder = encoder
        self.batch = batch
        self.computed_tokens = 0
        self.real_tokens = 0

    def score(self, query: str, products: list[str]) -> np.ndarray:
        encodings = self.encoder.encode([query] * len(products), products)
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        scores = np.empty(len(products), dtype=np.float32)
        for start in range(0, len(order), self.batch):
            rows = order[start : start + self.batch]
            padded = self.encoder.pad([encodings[i] for i in rows])
            self.computed_tokens += padded.input_ids.size
            self.real_tokens += padded.real_tokens
            scores[rows] = self.session.run(["SCORES"], padded.feed(self.input_names))[0].reshape(-1)
        return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=16, help="100-product requests per system per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("build/bench"))
    args = parser.parse_args()
    model = shaped_model(cache_dir_from(os.environ))
    repository = build_repository_unless_current(
        ExportConfig(model=model, output=args.workdir / "repository", max_length=MAX_LENGTH)
    )
    encoder = PairEncoder.from_file(repository / "tokenizer" / "1" / "tokenizer.json", MAX_LENGTH)
    workload = make_workload(queries=args.queries, candidates=100, seed=0)
    in_process = InProcessOnnxRuntime(repository / "scorer" / "1" / "model.onnx", encoder)

    latencies = {"triton": [], "onnxruntime_in_process": []}
    config = ServerConfig(repository=repository, grpc_port=0, http_port=0, metrics_port=0)
    with EmbeddedTritonServer(config) as server, RerankClient(server.grpc_url, timeout_s=120) as client:
        systems = {
            "triton": lambda r: client.score(r.query, list(r.products)),
            "onnxruntime_in_process": lambda r: in_process.score(r.query, list(r.products)),
        }
        for run in systems.values():  # warm-up, not timed
            run(workload[0])
        largest_difference = max(
            float(np.abs(systems["triton"](r) - systems["onnxruntime_in_process"](r)).max()) for r in workload[:2]
        )
        for round_number in range(args.rounds):
            for name, run in systems.items():
                for request in workload:
                    started = time.perf_counter()
                    run(request)
                    latencies[name].append(time.perf_counter() - started)
            print(f"round {round_number + 1}/{args.rounds} done", flush=True)

    summary = {name: _summary(values) for name, values in latencies.items()}
    ratio = summary["onnxruntime_in_process"]["p50_ms"] / summary["triton"]["p50_ms"]
    result = {
        "benchmark": "latency of one 100-product rerank",
        "command": "python perf/bench_latency.py " + " ".join(sys.argv[1:]),
        "model": "mmBERT-small-shaped ModernBERT, random weights, fp32 ONNX",
        "max_length": MAX_LENGTH,
        "requests_per_system_per_round": args.queries,
        "rounds": args.rounds,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "systems": summary,
        "triton_speed_vs_in_process": round(ratio, 3),
        "max_abs_score_difference": largest_difference,
        "in_process_padding_efficiency": round(in_process.real_tokens / in_process.computed_tokens, 3),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "latency_100_products.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0


def _summary(seconds: list[float]) -> dict:
    milliseconds = sorted(s * 1000 for s in seconds)
    return {
        "requests": len(milliseconds),
        "p50_ms": round(statistics.median(milliseconds), 1),
        "p95_ms": round(float(np.percentile(milliseconds, 95)), 1),
        "pairs_per_s": round(100 * len(milliseconds) / (sum(milliseconds) / 1000), 1),
    }


if __name__ == "__main__":
    sys.exit(main())
