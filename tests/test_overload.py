"""Overload: a bounded scorer queue rejects requests beyond capacity with a clear error
instead of piling them up; accepted requests are scored correctly; the server serves
normally once the load stops."""

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from polyrank.checkpoint import torch_scores
from polyrank.client import OverloadedError, RerankClient
from polyrank.export.build_repository import build_repository
from polyrank.export.config import ExportConfig, ServingConfig
from polyrank.model_repository.pair_encoding import PairEncoder
from polyrank.server import EmbeddedTritonServer, ServerConfig

PRODUCT = " ".join(["wireless bluetooth headphones with noise cancelling"] * 10)
PAIRS_PER_REQUEST = 64
CONCURRENT, REQUESTS = 32, 64


@pytest.fixture(scope="module")
def small_queue_server(tiny_modernbert_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("overload")
    config = ExportConfig(
        model=str(tiny_modernbert_dir), output=root / "repository", max_length=128,
        # The queue bound alone: admission control (tests/test_deadlines.py) would turn most of
        # these away before they reach the queue, and on a slow machine the default 2 s queue
        # timeout would expire some of those that wait (also overload, but another reason).
        serving=ServingConfig(max_batch_size=PAIRS_PER_REQUEST, max_queue_size=2, admission_control=False,
                              queue_timeout_s=120),
    )
    build_repository(config, log=lambda _: None)
    server_config = ServerConfig(
        repository=config.output, grpc_port=0, http_port=0, metrics_port=0, log_path=root / "tritonserver.log"
    )
    with EmbeddedTritonServer(server_config) as server:
        yield server


def test_beyond_capacity_requests_are_rejected_fast_and_accepted_ones_are_right(small_queue_server, tiny_checkpoint):
    encoder = PairEncoder(tiny_checkpoint.tokenizer, 128, tiny_checkpoint.pad_id)
    documents = [f"{PRODUCT} {i}" for i in range(PAIRS_PER_REQUEST)]
    expected = torch_scores(tiny_checkpoint, encoder, ["headphones"] * len(documents), documents)

    def call(client):
        started = time.perf_counter()
        try:
            scores = client.score("headphones", documents)
            return "ok", time.perf_counter() - started, scores
        except OverloadedError as error:
            return "rejected", time.perf_counter() - started, str(error)

    with RerankClient(small_queue_server.grpc_url, timeout_s=120, max_concurrent_requests=CONCURRENT) as client:
        with ThreadPoolExecutor(CONCURRENT) as pool:
            outcomes = list(pool.map(lambda _: call(client), range(REQUESTS)))
        accepted = [o for o in outcomes if o[0] == "ok"]
        rejected = [o for o in outcomes if o[0] == "rejected"]
        assert len(accepted) + len(rejected) == REQUESTS  # any other error would have been raised
        assert accepted and rejected, f"{len(accepted)} accepted, {len(rejected)} rejected"
        assert all("server at capacity" in o[2] and "Exceeds maximum queue size" in o[2] for o in rejected)
        assert all(np.abs(o[2] - expected).max() < 1e-4 for o in accepted)
        # rejected without waiting for a slot: faster than a typical accepted request
        assert statistics.median(o[1] for o in rejected) < statistics.median(o[1] for o in accepted)
        # the load has stopped: the next request is served, correctly
        assert np.abs(client.score("headphones", documents) - expected).max() < 1e-4


def test_queue_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="max_queue_size must be a positive integer"):
        ServingConfig(max_queue_size=0)
    with pytest.raises(ValueError, match="queue_timeout_s must be positive"):
        ServingConfig(queue_timeout_s=0)


def test_through_http_rejections_are_429_with_retry_after(small_queue_server, tiny_checkpoint):
    from polyrank.gateway.app import GatewaySettings
    from polyrank.gateway.server import GatewayServer, Listener

    encoder = PairEncoder(tiny_checkpoint.tokenizer, 128, tiny_checkpoint.pad_id)
    documents = [f"{PRODUCT} {i}" for i in range(PAIRS_PER_REQUEST)]
    expected = 1 / (1 + np.exp(-torch_scores(tiny_checkpoint, encoder, ["headphones"] * len(documents), documents)))
    body = {"model": "rerank", "query": "headphones", "documents": documents}
    with GatewayServer(GatewaySettings(triton_url=small_queue_server.grpc_url, timeout_s=120), Listener(port=0)) as api:
        with ThreadPoolExecutor(CONCURRENT) as pool:
            responses = list(pool.map(lambda _: requests.post(f"{api.url}/v2/rerank", json=body, timeout=180), range(REQUESTS)))
    statuses = sorted({r.status_code for r in responses})
    assert statuses == [200, 429], statuses
    for response in responses:
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "1"
            assert response.json()["error_type"] == "overloaded"
            assert "Exceeds maximum queue size" in response.json()["message"]
        else:
            results = response.json()["results"]
            assert max(abs(r["relevance_score"] - expected[r["index"]]) for r in results) < 1e-5
