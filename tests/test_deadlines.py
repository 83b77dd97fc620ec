"""Deadlines, priorities and admission control against the real server. A call's deadline
travels to Triton as the request's timeout. With admission control (the default), a request
whose deadline the queued work would make it miss is rejected at once at the pipeline's
entrance; without it, the request waits and is dropped from the queue when its deadline passes.
Either way it is never scored (the scorer's token counter does not move for it). Batch-priority
work waits behind interactive calls, so it cannot push an interactive call past its deadline."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from polyrank.client import DeadlineExceededError, InvalidRequestError, OverloadedError, RerankClient
from polyrank.export.build_repository import build_repository
from polyrank.export.config import ExportConfig, ServingConfig
from polyrank.metrics import scorer_token_counts
from polyrank.model_repository.admission import PipelineCounts
from polyrank.server import EmbeddedTritonServer, ServerConfig

PAIRS = 64
PRODUCTS = [f"wireless bluetooth headphones with noise cancelling, model {i}, " * 6 for i in range(PAIRS)]


def slow_server(model, root, admission_control: bool):
    """The tiny model made slow: one pair per run, so a request of 64 pairs keeps the scorer
    busy for a while and later requests queue behind it. A 30 s default deadline, so calls
    without their own are admitted behind a few others."""
    config = ExportConfig(
        model=str(model), output=root / "repository", max_length=128,
        serving=ServingConfig(max_batch_size=PAIRS, merge_requests=1, max_pairs_per_run=1, max_queue_size=64,
                              queue_timeout_s=30.0, admission_control=admission_control),
    )
    build_repository(config, log=lambda _: None)
    server_config = ServerConfig(repository=config.output, grpc_port=0, http_port=0, metrics_port=0, log_path=root / "tritonserver.log")
    return EmbeddedTritonServer(server_config)


@pytest.fixture(scope="module")
def queueing_server(tiny_modernbert_dir, tmp_path_factory):
    """Admission control off: requests queue until their deadline."""
    with slow_server(tiny_modernbert_dir, tmp_path_factory.mktemp("queueing"), admission_control=False) as server:
        yield server


@pytest.fixture(scope="module")
def admitting_server(tiny_modernbert_dir, tmp_path_factory):
    with slow_server(tiny_modernbert_dir, tmp_path_factory.mktemp("admitting"), admission_control=True) as server:
        yield server


def one_request_s(server) -> tuple[float, float, np.ndarray]:
    """(seconds, real tokens scored, scores) of one 64-pair request on the idle server (the
    faster of two, so a cold first call does not inflate it)."""
    with RerankClient(server.grpc_url) as client:
        client.score("headphones", PRODUCTS)
        before = scorer_token_counts(server.metrics_url)["real"]
        started = time.perf_counter()
        scores = client.score("headphones", PRODUCTS)
        seconds = time.perf_counter() - started
        return seconds, scorer_token_counts(server.metrics_url)["real"] - before, scores


def admission_case(one_request: float) -> tuple[float, int]:
    """(deadline, background requests) for a call admission control must reject: a deadline of
    at least 1 s, so a loaded 2-core machine's scheduling cannot make the rejection miss it, and
    enough queued 64-pair requests that the work ahead is three deadlines however fast this
    machine scores."""
    deadline_s = max(1.0, 2 * one_request)
    return deadline_s, min(60, math.ceil(3 * deadline_s / one_request) + 2)


def pipeline_counts(server) -> dict:
    """The counters the server's tokenizer and scorer share."""
    shared = PipelineCounts("scorer", server_pid=server.process.pid)
    with shared.changing() as counts:
        snapshot = dict(counts)
    shared.close()
    return snapshot


def admitted_requests(server) -> float:
    text = requests.get(server.metrics_url, timeout=10).text
    line = 'polyrank_admission_requests_total{model="tokenizer",outcome="admitted"} '
    return sum(float(row[len(line):]) for row in text.splitlines() if row.startswith(line))


def busy_and_admitted(server, requests_: int) -> ThreadPoolExecutor:
    """busy(), returning once the tokenizer has admitted all of it: a burst waits in the
    tokenizer's queue (one 64-pair request per execution here, about 20 ms each), and a call
    sent before it has passed would wait there too before admission control sees it."""
    before = admitted_requests(server)
    pool = busy(server, requests_)
    give_up = time.monotonic() + 60
    while admitted_requests(server) < before + requests_:
        assert time.monotonic() < give_up, "the background requests were not admitted within 60 s"
        time.sleep(0.01)
    return pool


def busy(server, requests_: int, priority: str = "interactive") -> ThreadPoolExecutor:
    """Starts `requests_` 64-pair calls at once; returns the pool (its futures are in .futures)."""
    pool = ThreadPoolExecutor(requests_)
    client = RerankClient(server.grpc_url, timeout_s=120, max_concurrent_requests=requests_, priority=priority)
    pool.futures = [pool.submit(client.score, "headphones", PRODUCTS) for _ in range(requests_)]
    pool.client = client
    return pool


def test_a_deadline_shorter_than_the_queue_wait_is_dropped_unscored(queueing_server):
    one_request, tokens_per_request, _ = one_request_s(queueing_server)
    before = scorer_token_counts(queueing_server.metrics_url)["real"]
    background = busy(queueing_server, 4)
    time.sleep(one_request / 4)  # the scorer is busy and three requests wait
    with RerankClient(queueing_server.grpc_url, retry_deadline_s=0) as client:
        started = time.perf_counter()
        with pytest.raises(DeadlineExceededError):
            client.score("headphones", ["a short product"], deadline_s=one_request / 4)
        assert time.perf_counter() - started < one_request  # answered at its deadline, not after the queue
    for future in background.futures:
        future.result()
    background.client.close()
    background.shutdown()
    time.sleep(one_request)  # had the dropped request reached the scorer, it would have run by now
    assert scorer_token_counts(queueing_server.metrics_url)["real"] - before == 4 * tokens_per_request
    # the background requests waited in the scorer's own queue, which Triton's queue time cannot see
    line = 'polyrank_scorer_queue_duration_us{model="scorer",priority="interactive"} '
    metrics = requests.get(queueing_server.metrics_url, timeout=10).text.splitlines()
    assert sum(float(row[len(line):]) for row in metrics if row.startswith(line)) > 1e6 * one_request


def test_admission_control_rejects_at_once_what_would_miss_its_deadline(admitting_server):
    one_request, tokens_per_request, expected = one_request_s(admitting_server)
    client = RerankClient(admitting_server.grpc_url, retry_deadline_s=0)
    client.score("headphones", PRODUCTS[:1])  # connected before the clock starts: on a loaded machine that took 0.5 s
    before = scorer_token_counts(admitting_server.metrics_url)["real"]
    deadline_s, queued = admission_case(one_request)
    background = busy_and_admitted(admitting_server, queued)  # work for about three deadlines is ahead
    with client:
        started = time.perf_counter()
        with pytest.raises(OverloadedError, match="admission control: .* tokens are ahead .* retry after") as rejected:
            client.score("headphones", PRODUCTS, deadline_s=deadline_s)
        assert time.perf_counter() - started < deadline_s / 2  # at once, not at its deadline
        assert rejected.value.retry_after_s > 0
        # one that fits in its deadline is admitted and answered
        scores = client.score("headphones", PRODUCTS, deadline_s=30)
    assert np.abs(scores - expected).max() < 1e-5
    for future in background.futures:
        assert np.abs(future.result() - expected).max() < 1e-5
    background.client.close()
    background.shutdown()
    time.sleep(one_request)
    assert scorer_token_counts(admitting_server.metrics_url)["real"] - before == (queued + 1) * tokens_per_request
    metrics = requests.get(admitting_server.metrics_url, timeout=10).text
    assert 'polyrank_admission_requests_total{model="tokenizer",outcome="rejected"} 1' in metrics
    # the tokenizer counted each admitted request's work as the scorer did: nothing is left on its way
    counts = pipeline_counts(admitting_server)
    assert counts["admitted"] == counts["received"] > 0
    assert counts["received_all"] == counts["scored_all"]


def test_batch_work_waits_behind_an_interactive_call(admitting_server):
    """Batch work is not counted by admission control either: the interactive call is admitted."""
    one_request, _, expected = one_request_s(admitting_server)
    finished = {}
    batch = busy(admitting_server, 12, priority="batch")
    for number, future in enumerate(batch.futures):
        future.add_done_callback(lambda _, n=number: finished.setdefault(f"batch{n}", time.perf_counter()))
    time.sleep(one_request / 4)
    with RerankClient(admitting_server.grpc_url) as client:
        # twelve batch requests queued: without priorities this would wait about 12 x one_request.
        # (Triton may have dispatched the next few already: priority orders what still waits.)
        scores = client.score("headphones", PRODUCTS, deadline_s=6 * one_request)
        finished["interactive"] = time.perf_counter()
    assert np.abs(scores - expected).max() < 1e-5
    for future in batch.futures:
        assert np.abs(future.result() - expected).max() < 1e-5  # batch work is done too, later
    batch.client.close()
    batch.shutdown()
    later = [name for name, at in finished.items() if name != "interactive" and at > finished["interactive"]]
    assert len(later) >= 6, finished


def test_http_deadline_header_gives_504_and_bad_values_400(queueing_server):
    from polyrank.gateway.app import GatewaySettings
    from polyrank.gateway.server import GatewayServer, Listener

    body = {"model": "rerank", "query": "headphones", "documents": PRODUCTS}
    with GatewayServer(GatewaySettings(triton_url=queueing_server.grpc_url), Listener(port=0)) as api:
        background = busy(queueing_server, 4)
        time.sleep(0.05)
        answer = requests.post(f"{api.url}/v2/rerank", json=body, headers={"polyrank-deadline-ms": "20"}, timeout=60)
        assert answer.status_code == 504, answer.text
        assert answer.json()["error_type"] == "deadline_exceeded"
        [future.result() for future in background.futures]
        background.client.close()
        background.shutdown()
        bad = requests.post(f"{api.url}/v2/rerank", json=body, headers={"polyrank-deadline-ms": "soon"}, timeout=60)
        assert bad.status_code == 400
        assert bad.json()["message"] == "polyrank-deadline-ms must be a positive number of milliseconds, got 'soon'"
        fine = requests.post(f"{api.url}/v2/rerank", json={**body, "priority": 1}, headers={"polyrank-deadline-ms": "60000"}, timeout=60)
        assert fine.status_code == 200 and len(fine.json()["results"]) == PAIRS


def test_http_admission_rejection_is_429_with_retry_after_from_the_queue(admitting_server):
    from polyrank.gateway.app import GatewaySettings
    from polyrank.gateway.server import GatewayServer, Listener

    one_request, _, _ = one_request_s(admitting_server)
    body = {"model": "rerank", "query": "headphones", "documents": PRODUCTS}
    with GatewayServer(GatewaySettings(triton_url=admitting_server.grpc_url), Listener(port=0)) as api:
        assert requests.post(f"{api.url}/v2/rerank", json=body, timeout=60).status_code == 200  # the gateway finds its models
        deadline_s, queued = admission_case(one_request)
        background = busy_and_admitted(admitting_server, queued)  # work for about three deadlines is ahead
        deadline_ms = str(int(1000 * deadline_s))
        answer = requests.post(f"{api.url}/v2/rerank", json=body, headers={"polyrank-deadline-ms": deadline_ms}, timeout=60)
        [future.result() for future in background.futures]
        background.client.close()
        background.shutdown()
    assert answer.status_code == 429, answer.text
    assert answer.json()["error_type"] == "overloaded"
    # a retry is worth it only after most of the work ahead is done: more than a deadline's worth
    assert int(answer.headers["Retry-After"]) >= int(deadline_s)


@pytest.mark.parametrize("settings, message", [
    ({"deadline_s": 0}, "deadline_s must be a positive number of seconds or None, got 0"),
    ({"deadline_s": "2"}, "deadline_s must be a positive number of seconds or None, got '2'"),
    ({"priority": "urgent"}, "priority must be one of interactive, batch, got 'urgent'"),
])
def test_bad_deadline_or_priority_is_refused(settings, message):
    with pytest.raises(InvalidRequestError, match=message):
        RerankClient("127.0.0.1:1", **settings)
    with RerankClient("127.0.0.1:1", retry_deadline_s=0) as client:
        with pytest.raises(InvalidRequestError, match=message):
            client.score("shoes", ["boots"], **settings)


def test_an_expired_deadline_is_not_sent(triton_server):
    with RerankClient(triton_server.grpc_url) as client:
        with pytest.raises(DeadlineExceededError):
            client.score("shoes", ["boots"] * 3, deadline_s=1e-9)
