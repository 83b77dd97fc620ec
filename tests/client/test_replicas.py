"""Several replicas behind one client (what a Kubernetes deployment gives it): three embedded
Triton servers on loopback, a stream of calls spread round robin; one replica is killed mid-
stream and later restarted on the same port, the stream going on until it serves again. Every
call is answered once with correct scores, and the restarted replica is back in rotation."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from polyrank.checkpoint import torch_scores
from polyrank.client import RerankClient, ServerUnavailableError, replicas_of
from polyrank.export.samples import SAMPLE_QUERIES
from polyrank.metrics import scorer_token_counts
from polyrank.model_repository.pair_encoding import PairEncoder
from polyrank.server import EmbeddedTritonServer, ServerConfig, free_port
from tests.call_stream import record_calls
from tests.conftest import TEST_MAX_LENGTH

MAX_CALLS = 2000  # the stream runs until the restarted replica has served again


def replica_config(repository, log_path):
    return ServerConfig(repository=repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                        startup_timeout_s=120, log_path=log_path)


def wait_until(condition, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_replica_killed_and_restarted_mid_stream_loses_and_duplicates_nothing(tiny_repository, tiny_checkpoint, tmp_path):
    encoder = PairEncoder(tiny_checkpoint.tokenizer, TEST_MAX_LENGTH, tiny_checkpoint.pad_id)
    expected = [torch_scores(tiny_checkpoint, encoder, [r.query] * len(r.products), list(r.products)) for r in SAMPLE_QUERIES]
    requests = [SAMPLE_QUERIES[i % len(SAMPLE_QUERIES)] for i in range(MAX_CALLS)]
    configs = [replica_config(tiny_repository, tmp_path / f"replica{i}.log") for i in range(3)]
    servers = [EmbeddedTritonServer(config).start() for config in configs]
    outcomes, stop = [None] * MAX_CALLS, threading.Event()
    done = lambda: sum(o is not None for o in outcomes)  # noqa: E731
    try:
        with RerankClient([s.grpc_url for s in servers], timeout_s=20, retry_deadline_s=60) as client:
            client.score("warm-up", ["reads the model's batch size once"])
            before = sum(replica.calls for replica in client.endpoints.replicas)
            worker = threading.Thread(target=record_calls, args=(client, requests, outcomes, 0.05, stop))
            worker.start()
            wait_until(lambda: done() >= 10)
            os.killpg(servers[1].process.pid, signal.SIGKILL)  # no goodbye: as a node dies
            servers[1].process.wait()
            wait_until(lambda: done() >= 30)
            served_before_restart = client.endpoints.replicas[1].calls
            servers[1] = EmbeddedTritonServer(configs[1]).start()
            wait_until(lambda: client.endpoints.replicas[1].calls >= served_before_restart + 3)  # back in rotation
            stop.set()
            worker.join(timeout=60)
            assert not worker.is_alive(), "the call stream hung"
            calls_per_replica = [replica.calls for replica in client.endpoints.replicas]
        restarted_tokens = scorer_token_counts(servers[1].metrics_url)["real"]
    finally:
        stop.set()
        for server in servers:
            server.stop()
    calls = done()
    assert all(o is not None for o in outcomes[:calls]), "a call has no outcome"
    errors = [(i, o[1]) for i, o in enumerate(outcomes[:calls]) if o[0] == "error"]
    assert not errors, errors[:3]
    wrong = [i for i, o in enumerate(outcomes[:calls]) if np.abs(o[1] - expected[i % len(expected)]).max() > 1e-4]
    assert not wrong, f"wrong scores for calls {wrong}"
    assert sum(calls_per_replica) - before == calls, calls_per_replica  # each call answered by exactly one replica
    assert min(calls_per_replica[0], calls_per_replica[2]) >= 10, calls_per_replica  # spread round robin
    assert restarted_tokens > 0  # the restarted replica scored calls


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


def test_a_name_resolves_to_every_replica_address():
    assert "127.0.0.1:8001" in replicas_of("localhost:8001")
    with pytest.raises(ValueError, match="expected host:port, got 'localhost'"):
        replicas_of("localhost")
