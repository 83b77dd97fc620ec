"""Export a tiny ModernBERT, serve it on the real embedded tritonserver, rerank over gRPC."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from polyrank.checkpoint import torch_scores
from polyrank.client import RerankClient, ServerUnavailableError
from polyrank.export.samples import SAMPLE_QUERIES, parity_pairs
from polyrank.model_repository.pair_encoding import PairEncoder
from polyrank.server import free_port
from tests.conftest import TEST_MAX_BATCH_SIZE, TEST_MAX_LENGTH

UNICODE_PRODUCTS = [
    "罗技 G915 无线机械键盘 青轴",
    "象印 IH炊飯器 5.5合 極め炊き",
    "ساعة ذكية مقاومة للماء مع مراقبة معدل ضربات القلب",
    "Party pack 🎉🥳 balloons 🎈 ×50",
    "Cafe\u0301 au lait cups, combining accent",
    "Ελληνικό ελαιόλαδο 1 l",
]


@pytest.fixture(scope="module")
def client(triton_server):
    with RerankClient(triton_server.grpc_url, timeout_s=60) as client:
        yield client


@pytest.fixture(scope="module")
def reference(tiny_checkpoint):
    encoder = PairEncoder(tiny_checkpoint.tokenizer, TEST_MAX_LENGTH, tiny_checkpoint.pad_id)

    def scores(query, documents):
        return torch_scores(tiny_checkpoint, encoder, [query] * len(documents), list(documents))

    return scores


def test_triton_scores_equal_pytorch_scores(client, reference):
    queries, documents = parity_pairs()
    worst = 0.0
    for query in dict.fromkeys(queries):
        products = [d for q, d in zip(queries, documents) if q == query]
        served = client.score(query, products)
        worst = max(worst, float(np.abs(served - reference(query, products)).max()))
    assert worst <= 1e-4


def test_rerank_sorts_descending_and_maps_back_to_caller_indices(client, reference):
    sample = SAMPLE_QUERIES[1]
    ranked = client.rerank(sample.query, list(sample.products))
    expected = reference(sample.query, sample.products)
    assert sorted(item["index"] for item in ranked) == list(range(len(sample.products)))
    assert [item["index"] for item in ranked] == list(np.argsort(-expected, kind="stable"))
    scores = [item["score"] for item in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all("document" not in item for item in ranked)


def test_top_k_keeps_the_best(client):
    sample = SAMPLE_QUERIES[2]
    everything = client.rerank(sample.query, list(sample.products))
    best_two = client.rerank(sample.query, list(sample.products), top_k=2, return_documents=True)
    assert [i["index"] for i in best_two] == [i["index"] for i in everything[:2]]
    assert [i["document"] for i in best_two] == [sample.products[i["index"]] for i in everything[:2]]
    assert len(client.rerank(sample.query, list(sample.products), top_k=99)) == len(sample.products)


def test_long_lists_are_split_into_chunks_and_merged(client, reference):
    products = [p for sample in SAMPLE_QUERIES for p in sample.products][:27]
    assert len(products) > 3 * TEST_MAX_BATCH_SIZE
    query = SAMPLE_QUERIES[0].query
    ranked = client.rerank(query, products, return_documents=True)
    assert len(ranked) == len(products)
    served = np.empty(len(products), dtype=np.float32)
    for item in ranked:
        assert item["document"] == products[item["index"]]
        served[item["index"]] = item["score"]
    assert np.abs(served - reference(query, products)).max() <= 1e-4


def test_unicode_round_trips_and_scores_like_pytorch(client, reference):
    query = "ギフト 礼物 هدية 🎁"
    ranked = client.rerank(query, UNICODE_PRODUCTS, return_documents=True)
    assert {item["document"] for item in ranked} == set(UNICODE_PRODUCTS)
    served = {item["index"]: item["score"] for item in ranked}
    expected = reference(query, UNICODE_PRODUCTS)
    assert max(abs(served[i] - expected[i]) for i in range(len(UNICODE_PRODUCTS))) <= 1e-4


def test_dynamic_batching_merges_concurrent_requests(triton_server, reference):
    stats_client = grpcclient.InferenceServerClient(triton_server.grpc_url)

    def counts():
        [model] = stats_client.get_inference_statistics("scorer").model_stats
        return model.inference_stats.success.count, model.execution_count

    requests_before, executions_before = counts()
    sample = SAMPLE_QUERIES[3]
    start = threading.Barrier(16)

    def one_request(_):
        with RerankClient(triton_server.grpc_url, timeout_s=60) as own:
            start.wait()
            return own.score(sample.query, list(sample.products))

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one_request, range(48)))
    requests_after, executions_after = counts()
    stats_client.close()

    expected = reference(sample.query, sample.products)
    assert all(np.abs(r - expected).max() <= 1e-4 for r in results)
    requests = requests_after - requests_before
    executions = executions_after - executions_before
    assert requests == 48
    assert executions < requests, f"{executions} executions for {requests} requests: nothing was batched"


def test_invalid_utf8_sent_around_the_client_is_refused_and_server_keeps_serving(triton_server, client):
    raw = grpcclient.InferenceServerClient(triton_server.grpc_url)
    query = grpcclient.InferInput("QUERY", [1, 1], "BYTES")
    query.set_data_from_numpy(np.array([[b"shoes"]], dtype=object))
    documents = grpcclient.InferInput("DOCUMENTS", [1, 1], "BYTES")
    documents.set_data_from_numpy(np.array([[b"caf\xff shoes"]], dtype=object))
    with pytest.raises(InferenceServerException) as raised:
        raw.infer("rerank", [query, documents])
    raw.close()
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "DOCUMENTS[0] is not valid UTF-8" in raised.value.message()
    assert len(client.rerank("shoes", ["running shoes", "coffee"])) == 2


def test_rerank_cli_reads_products_from_stdin(triton_server):
    products = "Nike Pegasus running shoe\n\nCoffee grinder\n象印 炊飯器\n"
    result = subprocess.run(
        [sys.executable, "-m", "polyrank.cli", "rerank", "--url", triton_server.grpc_url,
         "--query", "running shoes", "--documents", "-", "--top-k", "2"],
        input=products, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    ranking = [line for line in result.stdout.splitlines() if line.strip()[:2] in ("1.", "2.")]
    assert len(ranking) == 2
    assert "3 products reranked in" in result.stdout


def test_rerank_cli_reports_a_missing_server_in_one_line(tmp_path):
    (tmp_path / "products.txt").write_text("running shoes\n")
    result = subprocess.run(
        [sys.executable, "-m", "polyrank.cli", "rerank", "--url", f"127.0.0.1:{free_port()}",
         "--query", "shoes", "--documents", str(tmp_path / "products.txt"), "--timeout", "5", "--retry-deadline", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("polyrank rerank: error:")
    assert "gave up after" in result.stderr and "over 1 s" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_starts_the_server_and_its_http_api_and_stops_both_on_ctrl_c(tiny_repository):
    ports = [str(free_port()) for _ in range(4)]
    process = subprocess.Popen(
        [sys.executable, "-m", "polyrank.cli", "serve", "--repository", str(tiny_repository),
         "--grpc-port", ports[0], "--http-port", ports[1], "--metrics-port", ports[2], "--api-port", ports[3]],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        output = []
        for line in process.stdout:
            output.append(line)
            if "Ctrl-C to stop" in line:
                break
        text = "".join(output)
        assert f"gRPC     127.0.0.1:{ports[0]}" in text, text
        assert f"metrics  http://127.0.0.1:{ports[2]}/metrics" in text
        assert f"HTTP API http://127.0.0.1:{ports[3]}" in text
        with RerankClient(f"127.0.0.1:{ports[0]}") as client:
            logit = client.score("shoes", ["running shoes"])[0]
        body = {"model": "rerank", "query": "shoes", "documents": ["running shoes"]}
        answer = requests.post(f"http://127.0.0.1:{ports[3]}/v2/rerank", json=body, timeout=60).json()
        assert answer["results"][0]["relevance_score"] == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-6)
        assert listening_addresses(int(ports[0])) == listening_addresses(int(ports[3])) == {"127.0.0.1"}  # loopback only, by default
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert not listening_addresses(int(ports[3]))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with pytest.raises(ServerUnavailableError):  # stopped: nothing listens there any more
        RerankClient(f"127.0.0.1:{ports[0]}", timeout_s=2, retry_deadline_s=0).rerank("shoes", ["running shoes"])


def listening_addresses(port: int) -> set[str]:
    """Addresses with a socket listening on `port` (/proc/net/tcp and tcp6; an IPv4-mapped
    IPv6 address is given as IPv4, any other IPv6 one as its hex)."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, local_port = local.split(":")
            if int(local_port, 16) != port or state != "0A":  # 0A: LISTEN
                continue
            if len(address) == 32 and address[:24] == "0000000000000000FFFF0000":
                address = address[24:]
            if len(address) == 8:
                addresses.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
            else:
                addresses.add(address)
    return addresses


def test_scorer_reports_real_and_computed_tokens_on_the_metrics_endpoint(triton_server, client, tiny_checkpoint):
    from polyrank.metrics import scorer_token_counts

    sample = SAMPLE_QUERIES[0]
    encoder = PairEncoder(tiny_checkpoint.tokenizer, TEST_MAX_LENGTH, tiny_checkpoint.pad_id)
    real = sum(len(e.ids) for e in encoder.encode([sample.query] * len(sample.products), list(sample.products)))
    before = scorer_token_counts(triton_server.metrics_url)
    client.score(sample.query, list(sample.products))
    after = scorer_token_counts(triton_server.metrics_url)
    assert after["real"] - before.get("real", 0) == real
    assert real <= after["computed"] - before.get("computed", 0) < 2 * real


def test_rerank_many_shares_one_request_and_equals_separate_calls(triton_server, client):
    lists = [("running shoes", ["Nike Pegasus 40", "coffee grinder"]), ("炊飯器 5合", ["象印 IH炊飯器", "電気ケトル", "炊飯器"]),
             ("écouteurs", ["écouteurs sans fil"])]
    stats = grpcclient.InferenceServerClient(triton_server.grpc_url)
    served = lambda: int(stats.get_inference_statistics("rerank", as_json=True)["model_stats"][0]["inference_stats"]["success"].get("count", 0))  # noqa: E731
    requests_before = served()
    rankings = client.rerank_many(lists, top_k=2, return_documents=True)
    # The scorer answers through its response sender: Triton may count the request just after the answer arrives.
    deadline = time.monotonic() + 5
    while served() == requests_before and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # a second request, had there been one, would be counted by now too
    requests_after = served()
    stats.close()
    assert requests_after - requests_before == 1  # 6 pairs of 3 queries, one request
    for ranking, (query, documents) in zip(rankings, lists):
        separate = client.rerank(query, documents, top_k=2, return_documents=True)
        assert [r["index"] for r in ranking] == [r["index"] for r in separate]
        assert [r["document"] for r in ranking] == [r["document"] for r in separate]
        assert [r["score"] for r in ranking] == pytest.approx([r["score"] for r in separate], abs=1e-5)
