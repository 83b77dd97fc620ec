"""`polyrank demo`: export a model, serve it on the embedded Triton, rerank multilingual queries."""

from __future__ import annotations

import itertools
import statistics
import time
from pathlib import Path
from typing import Optional

from polyrank.client.cli import format_ranking
from polyrank.client.client import RerankClient
from polyrank.export.assets import has_random_weights, shaped_model
from polyrank.export.build_repository import build_repository_unless_current
from polyrank.export.config import ExportConfig
from polyrank.export.samples import SAMPLE_QUERIES
from polyrank.server import EmbeddedTritonServer, ServerConfig

RANDOM_WEIGHTS_NOTE = (
    "NOTE: this model is mmBERT-small-shaped with RANDOM weights (no model hub here): "
    "its scores and rankings are NOT meaningful. Use `make demo MODEL=<checkpoint>` for real ones."
)


def run_demo(model: Optional[str], workdir: Path, cache_dir: Path, precision: str = "fp32") -> int:
    if model is None:
        model = shaped_model(cache_dir)
        print(f"default model: mmBERT-small-shaped cross-encoder with the exact Gemma-2 tokenizer ({model})")
    random_weights = has_random_weights(model)
    if random_weights:
        print(RANDOM_WEIGHTS_NOTE)

    config = ExportConfig(model=model, output=Path(workdir) / f"repository-{precision}", precision=precision)
    repository = build_repository_unless_current(config)

    print("starting the embedded Triton server ...")
    started = time.perf_counter()
    config = ServerConfig(repository=repository, grpc_port=0, http_port=0, metrics_port=0)
    with EmbeddedTritonServer(config) as server:
        print(f"ready in {time.perf_counter() - started:.1f} s; gRPC {server.grpc_url}, metrics {server.metrics_url}")
        with RerankClient(server.grpc_url) as client:
            for sample in SAMPLE_QUERIES:
                started = time.perf_counter()
                ranked = client.rerank(sample.query, list(sample.products), return_documents=True)
                elapsed_ms = (time.perf_counter() - started) * 1000
                print(f"\n[{sample.language}] " + format_ranking(sample.query, ranked))
                print(f"      {len(ranked)} products in {elapsed_ms:.1f} ms")
            _print_100_product_latency(client)
        print("\nstopping the server")
    if random_weights:
        print(RANDOM_WEIGHTS_NOTE)
    return 0


def _print_100_product_latency(client: RerankClient, calls: int = 5) -> None:
    products = [p for sample in SAMPLE_QUERIES for p in sample.products]
    hundred = list(itertools.islice(itertools.cycle(products), 100))
    query = SAMPLE_QUERIES[0].query
    client.rerank(query, hundred)  # first call pays one-off costs
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        client.rerank(query, hundred)
        timings.append((time.perf_counter() - started) * 1000)
    print(f"\none 100-product rerank: median {statistics.median(timings):.0f} ms over {calls} calls")
