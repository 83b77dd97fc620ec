"""Several replicas behind one client (what a Kubernetes deployment gives it): three embedded
Triton servers on loopback, a stream of calls spread round robin; one replica is killed mid-
stream and later restarted on the same port. Every call is answered once with correct scores,
and the restarted replica is back in rotation."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from polyrank.checkpoint import torch_scores
from polyrank.client import RerankClient, ServerUnavailableError
from polyrank.export.samples import SAMPLE_QUERIES
from polyrank.metrics import scorer_token_counts
from polyrank.model_repository.pair_encoding import PairEncoder
from polyrank.server import EmbeddedTritonServer, ServerConfig, free_port
from tests.conftest import TEST_MAX_LENGTH

CALLS = 60


def replica_config(repository, log_path):
    return ServerConfig(repository=repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                        startup_timeout_s=120, log_path=log_path)


def test_a_replica_killed_and_restarted_mid_stream_loses_and_duplicates_nothing(tiny_repository, tiny_checkpoint, tmp_path):
    encoder = PairEncoder(tiny_checkpoint.tokenizer, TEST_MAX_LENGTH, tiny_checkpoint.pad_id)
    requests = [SAMPLE_QUERIES[i % len(SAMPLE_QUERIES)] for i in range(CALLS)]
    expected = [torch_scores(tiny_checkpoint, encoder, [r.query] * len(r.products), list(r.products)) for r in requests]
    configs = [replica_config(tiny_repository, tmp_path / f"replica{i}.log") for i in range(3)]
    servers = [EmbeddedTritonServer(config).start() for config in configs]
    outcomes = [None] * CALLS
    try:
        with RerankClient([s.grpc_url for s in servers], timeout_s=20, retry_deadline_s=60) as client:
            def stream():
                for i, request in enumerate(requests):
                    try:
                        outcomes[i] = ("ok", client.score(request.query, list(request.products)))
                    except Exception as error:  # recorded, never swallowed: the test checks each outcome
                        outcomes[i] = ("error", error)
                    time.sleep(0.05)

            worker = threading.Thread(target=stream)
            worker.start()
            while sum(o is not None for o in outcomes) < 10:
                time.sleep(0.02)
            os.killpg(servers[1].process.pid, signal.SIGKILL)  # no goodbye: as a node dies
            servers[1].process.wait()
            while sum(o is not None for o in outcomes) < 30:
                time.sleep(0.02)
            served_before_restart = client.endpoints.replicas[1].calls
            servers[1] = EmbeddedTritonServer(configs[1]).start()
            worker.join(timeout=180)
            assert not worker.is_alive(), "the call stream hung"
            calls_per_replica = [replica.calls for replica in client.endpoints.replicas]
        restarted_tokens = scorer_token_counts(servers[1].metrics_url)["real"]
    finally:
        for server in servers:
            server.stop()
    errors = [(i, o[1]) for i, o in enumerate(outcomes) if o is None or o[0] == "error"]
    assert not errors, errors[:3]
    wrong = [i for i, (o, want) in enumerate(zip(outcomes, expected)) if np.abs(o[1] - want).max() > 1e-4]
    assert not wrong, f"wrong scores for calls {wrong}"
    assert sum(calls_per_replica) == CALLS, calls_per_replica  # each call answered by exactly one replica
    assert min(calls_per_replica[0], calls_per_replica[2]) >= 10, calls_per_replica  # spread round robin
    assert calls_per_replica[1] > served_before_restart and restarted_tokens > 0  # back in rotation


def test_all_replicas_down_fails_in_one_line_after_the_retry_deadline():
    urls = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    with RerankClient(urls, retry_deadline_s=0.5, timeout_s=1) as client:
        started = time.monotonic()
        with pytest.raises(ServerUnavailableError, match="gave up after [0-9]+ attempts on 2 replicas over 0.5 s"):
            client.score("shoes", ["boots"])
        assert time.monotonic() - started < 5


def test_replicas_can_be_given_as_one_comma_separated_string():
    with RerankClient("127.0.0.1:1, 127.0.0.1:2", retry_deadline_s=0) as client:
        assert [r.url for r in client.endpoints.replicas] == ["127.0.0.1:1", "127.0.0.1:2"]
