"""Triton's response cache for repeated queries: off by default; with `response_cache_mb`, a
request identical to an earlier one is answered from the cache, with identical scores."""

from __future__ import annotations

import re
import urllib.request

import numpy as np
import pytest

from polyrank.client import RerankClient
from polyrank.server import EmbeddedTritonServer, ServerConfig

PRODUCTS = [f"wireless headphones model {i}" for i in range(20)]


def cache_counts(metrics_url: str) -> tuple[int, int]:
    """(hits, misses) of the rerank pipeline's response cache."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    counts = [re.search(rf'^nv_cache_num_{kind}_per_model{{model="rerank",version="1"}} (\d+)', text, re.M) for kind in ("hits", "misses")]
    return tuple(int(c.group(1)) if c else 0 for c in counts)


@pytest.fixture(scope="module")
def cached_server(tiny_repository, tmp_path_factory):
    config = ServerConfig(
        repository=tiny_repository, grpc_port=0, http_port=0, metrics_port=0, response_cache_mb=16,
        log_path=tmp_path_factory.mktemp("cache") / "tritonserver.log",
    )
    with EmbeddedTritonServer(config) as server:
        yield server


def test_a_repeated_request_is_answered_from_the_cache_with_identical_scores(cached_server, triton_server):
    with RerankClient(cached_server.grpc_url) as client:
        first = client.score("headphones", PRODUCTS)
        hits, misses = cache_counts(cached_server.metrics_url)
        second = client.score("headphones", PRODUCTS)
        assert np.array_equal(first, second)
        chunks = cache_counts(cached_server.metrics_url)[0] - hits
        assert chunks >= 1 and cache_counts(cached_server.metrics_url)[1] == misses  # every chunk a hit
        changed = client.score("headphones", PRODUCTS[:-1] + ["coffee grinder"])
        assert cache_counts(cached_server.metrics_url)[1] > misses  # a different list is scored
        assert np.abs(changed[:-1] - first[:-1]).max() < 1e-5
    with RerankClient(triton_server.grpc_url) as client:  # no cache unless asked for
        client.score("headphones", PRODUCTS)
        client.score("headphones", PRODUCTS)
        assert cache_counts(triton_server.metrics_url) == (0, 0)


def test_cache_size_is_checked(tiny_repository):
    with pytest.raises(ValueError, match="response cache size must be 0"):
        ServerConfig(repository=tiny_repository, response_cache_mb=-1)
