"""Faults: the server restarts under a stream of rerank calls; the client retries UNAVAILABLE
with backoff, so every call returns correct scores or a clear error, and none is lost."""

import os
import signal
import threading
import time

import numpy as np
import pytest

from polyrank.client import RerankClient, ServerUnavailableError
from polyrank.checkpoint import torch_scores
from polyrank.export.samples import SAMPLE_QUERIES
from polyrank.model_repository.pair_encoding import PairEncoder
from polyrank.server import EmbeddedTritonServer, ServerConfig, free_port
from polyrank.supervisor import supervise
from tests.call_stream import record_calls
from tests.conftest import TEST_MAX_LENGTH

CALLS = 40


def fixed_port_config(repository, log_path):
    return ServerConfig(
        repository=repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
        startup_timeout_s=120, log_path=log_path,
    )


def test_restart_under_load_loses_no_call_and_returns_no_wrong_score(tiny_repository, tiny_checkpoint, tmp_path):
    encoder = PairEncoder(tiny_checkpoint.tokenizer, TEST_MAX_LENGTH, tiny_checkpoint.pad_id)
    requests = [SAMPLE_QUERIES[i % len(SAMPLE_QUERIES)] for i in range(CALLS)]
    expected = [torch_scores(tiny_checkpoint, encoder, [r.query] * len(r.products), list(r.products)) for r in requests]
    config = fixed_port_config(tiny_repository, tmp_path / "tritonserver.log")
    outcomes = [None] * CALLS

    server = EmbeddedTritonServer(config).start()
    try:
        with RerankClient(server.grpc_url, timeout_s=20, retry_deadline_s=90) as client:
            worker = threading.Thread(target=record_calls, args=(client, requests, outcomes))
            worker.start()
            while sum(o is not None for o in outcomes) < 5:
                time.sleep(0.05)
            server.stop()
            restarted_at = time.monotonic()
            server = EmbeddedTritonServer(config).start()
            restart_s = time.monotonic() - restarted_at
            worker.join(timeout=180)
            assert not worker.is_alive(), "the call stream hung"
    finally:
        server.stop()
    assert all(o is not None for o in outcomes), "a call has no outcome"
    errors = [(i, o[1]) for i, o in enumerate(outcomes) if o[0] == "error"]
    assert not errors, f"calls failed across a {restart_s:.1f} s restart: {errors[:3]}"
    wrong = [i for i, (o, want) in enumerate(zip(outcomes, expected)) if np.abs(o[1] - want).max() > 1e-4]
    assert not wrong, f"wrong scores for calls {wrong}"


def test_a_dead_tokenizer_process_restarts_the_server_and_no_call_is_lost(tiny_repository, tmp_path):
    """Triton 2.51 neither restarts a dead Python-backend process nor turns readiness false:
    the model answers INTERNAL "Stub process 'tokenizer_0_0' is not healthy" forever. The
    supervisor (what `polyrank serve` runs) notices and restarts the server; the client retries."""
    config = fixed_port_config(tiny_repository, tmp_path / "tritonserver.log")
    server = EmbeddedTritonServer(config).start()
    stop, restarts, messages = threading.Event(), [], []
    watcher = threading.Thread(target=lambda: restarts.append(supervise(server, stop.is_set, messages.append, 0.2)))
    watcher.start()
    try:
        with RerankClient(server.grpc_url, timeout_s=20, retry_deadline_s=90) as client:
            before = client.score("shoes", ["running shoes", "coffee"])
            os.kill(server.python_stubs()["tokenizer_0_0"], signal.SIGKILL)
            after = [client.score("shoes", ["running shoes", "coffee"]) for _ in range(5)]
    finally:
        stop.set()
        watcher.join(timeout=60)
        server.stop()
    assert restarts == [1], messages
    assert messages == ["the Python process of tokenizer_0_0 died; restarting the server (1/5)"]
    assert all(np.abs(scores - before).max() < 1e-6 for scores in after)


def test_no_server_gives_up_after_the_retry_deadline_with_a_clear_error():
    with RerankClient(f"127.0.0.1:{free_port()}", timeout_s=2, retry_deadline_s=1.5, backoff_s=0.1) as client:
        started = time.monotonic()
        with pytest.raises(ServerUnavailableError, match=r"gave up after \d+ attempts over 1.5 s"):
            client.rerank("running shoes", ["Nike Pegasus 40"])
        assert 1.4 < time.monotonic() - started < 6


def test_retry_settings_are_checked():
    with pytest.raises(ValueError, match="retry_deadline_s >= 0"):
        RerankClient("127.0.0.1:1", backoff_s=0)
