"""The HTTP API against the real embedded Triton, called by clients nobody here wrote: Cohere's
own SDK (v1 and v2) and plain `requests` for TEI's shape. Scores must equal the gRPC client's
for the same pairs (relevance_score = the sigmoid of its logit)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cohere
import numpy as np
import pytest
import requests

from polyrank.client import RerankClient
from polyrank.gateway.app import GatewaySettings
from polyrank.gateway.long_documents import DocumentWindows
from polyrank.gateway.server import GatewayServer, Listener
from tests.conftest import TEST_MAX_BATCH_SIZE, TEST_MAX_LENGTH

QUERY = "wireless headphones"
PRODUCTS = [
    "Sony WH-1000XM5 wireless noise cancelling headphones",
    "Kaffeemühle aus Edelstahl",
    "écouteurs sans fil Bluetooth",
    "ワイヤレスイヤホン ノイズキャンセリング",
    "USB-C charging cable 2 m",
    "Auriculares inalámbricos deportivos",
    "Coffee grinder",
    "Bluetooth speaker waterproof",
    "Kopfhörer kabellos mit Mikrofon",
    "Phone case",
    "sluchátka bezdrátová",
]  # more than TEST_MAX_BATCH_SIZE: the gateway splits it into several Triton requests


def sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, dtype=np.float64)))


@pytest.fixture(scope="module")
def api(triton_server, tiny_repository):
    settings = GatewaySettings(triton_url=triton_server.grpc_url, repository=tiny_repository)
    with GatewayServer(settings, Listener(port=0)) as server:
        yield server.url


@pytest.fixture(scope="module")
def grpc(triton_server):
    with RerankClient(triton_server.grpc_url, timeout_s=60) as client:
        yield client


def test_cohere_v2_sdk_gets_sorted_results_with_the_grpc_clients_scores(api, grpc):
    assert len(PRODUCTS) > TEST_MAX_BATCH_SIZE
    expected = sigmoid(grpc.score(QUERY, PRODUCTS))
    co = cohere.ClientV2(base_url=api, api_key="unused")
    response = co.rerank(model="rerank", query=QUERY, documents=PRODUCTS, top_n=5)
    assert [r.index for r in response.results] == list(np.argsort(-expected, kind="stable")[:5])
    for result in response.results:
        assert result.relevance_score == pytest.approx(expected[result.index], abs=1e-6)
        assert 0 <= result.relevance_score <= 1
    assert response.id and response.meta.api_version.version == "2"


def test_cohere_v1_sdk_keeps_document_objects_and_uses_the_default_model(api, grpc):
    documents = [{"text": text, "sku": f"SKU-{i}"} for i, text in enumerate(PRODUCTS[:4])]
    co = cohere.Client(base_url=api, api_key="unused")
    response = co.rerank(query=QUERY, documents=documents, return_documents=True)
    expected = sigmoid(grpc.score(QUERY, PRODUCTS[:4]))
    assert [r.index for r in response.results] == list(np.argsort(-expected, kind="stable"))
    for result in response.results:
        assert result.document.text == PRODUCTS[result.index]
        assert result.document.sku == f"SKU-{result.index}"  # other fields come back as sent
        assert result.relevance_score == pytest.approx(expected[result.index], abs=1e-6)


def test_v1_rank_fields_score_the_named_fields_as_lines(api, grpc):
    documents = [{"title": "Sony headphones", "brand": "Sony"}, {"title": "Coffee grinder", "brand": "Bodum"}]
    body = {"query": QUERY, "documents": documents, "rank_fields": ["title", "brand"]}
    results = requests.post(f"{api}/v1/rerank", json=body, timeout=60).json()["results"]
    expected = sigmoid(grpc.score(QUERY, ["title: Sony headphones\nbrand: Sony", "title: Coffee grinder\nbrand: Bodum"]))
    assert {r["index"]: r["relevance_score"] for r in results} == pytest.approx(dict(enumerate(expected)), abs=1e-6)


def test_v2_return_documents_gives_text_objects(api):
    body = {"model": "rerank", "query": QUERY, "documents": PRODUCTS[:3], "return_documents": True}
    results = requests.post(f"{api}/v2/rerank", json=body, timeout=60).json()["results"]
    assert sorted(r["index"] for r in results) == [0, 1, 2]
    assert all(r["document"] == {"text": PRODUCTS[r["index"]]} for r in results)


def test_tei_shape_raw_and_normalised_scores_and_text(api, grpc):
    logits = grpc.score(QUERY, PRODUCTS)
    raw = requests.post(f"{api}/rerank", json={"query": QUERY, "texts": PRODUCTS, "raw_scores": True}, timeout=60).json()
    assert [r["index"] for r in raw] == list(np.argsort(-logits, kind="stable"))
    assert {r["index"]: r["score"] for r in raw} == pytest.approx(dict(enumerate(logits.tolist())), abs=1e-6)
    assert all("text" not in r for r in raw)
    normalised = requests.post(f"{api}/rerank", json={"query": QUERY, "texts": PRODUCTS, "return_text": True}, timeout=60).json()
    assert {r["index"]: r["score"] for r in normalised} == pytest.approx(dict(enumerate(sigmoid(logits))), abs=1e-6)
    assert all(r["text"] == PRODUCTS[r["index"]] for r in normalised)


def test_batch_of_lists_in_one_call_equals_separate_calls(api, grpc):
    lists = [(QUERY, PRODUCTS[:5]), ("Kaffeemühle", PRODUCTS[3:9]), ("イヤホン", PRODUCTS)]
    body = {"requests": [{"query": q, "documents": d, "top_n": 3} for q, d in lists]}
    rankings = requests.post(f"{api}/v1/rerank/batch", json=body, timeout=60).json()["rankings"]
    assert len(rankings) == 3
    for ranking, (query, documents) in zip(rankings, lists):
        expected = sigmoid(grpc.score(query, documents))
        assert [r["index"] for r in ranking["results"]] == list(np.argsort(-expected, kind="stable")[:3])
        assert [r["relevance_score"] for r in ranking["results"]] == pytest.approx(sorted(expected, reverse=True)[:3], abs=1e-6)


def test_unknown_model_is_404_listing_the_served_ones(api):
    co = cohere.ClientV2(base_url=api, api_key="unused")
    with pytest.raises(cohere.NotFoundError) as raised:
        co.rerank(model="rerank-v3.5", query=QUERY, documents=PRODUCTS[:2])
    assert raised.value.body == {"message": "model 'rerank-v3.5' is not served here; served: rerank", "error_type": "model_not_found"}


def goodput(metrics: str) -> float:
    line = next((l for l in metrics.splitlines() if l.startswith('polyrank_http_documents_in_deadline_total{route="/rerank"}')), None)
    return float(line.split()[-1]) if line else 0.0


def test_health_models_and_metrics(api):
    assert requests.get(f"{api}/health", timeout=10).json() == {"status": "ok"}
    models = requests.get(f"{api}/v1/models", timeout=10).json()["data"]
    assert [(m["id"], m["max_tokens"]) for m in models] == [("rerank", TEST_MAX_LENGTH)]
    requests.post(f"{api}/v2/rerank", json={"model": "nope", "query": QUERY, "documents": ["x"]}, timeout=10)
    goodput_before = goodput(requests.get(f"{api}/metrics", timeout=10).text)
    answered = requests.post(f"{api}/rerank", json={"query": QUERY, "texts": PRODUCTS[:3]}, headers={"polyrank-deadline-ms": "30000"}, timeout=60)
    assert answered.status_code == 200
    metrics = requests.get(f"{api}/metrics", timeout=10).text
    assert goodput(metrics) == goodput_before + 3  # products answered within their deadline
    assert 'polyrank_http_requests_total{route="/v2/rerank",status="404"}' in metrics
    assert 'polyrank_http_errors_total{kind="model_not_found",route="/v2/rerank"}' in metrics
    assert 'polyrank_http_request_duration_seconds_bucket{le="0.005",route="/health"}' in metrics


def test_concurrent_http_calls_are_all_answered_correctly(api, grpc):
    expected = sigmoid(grpc.score(QUERY, PRODUCTS))

    def call(_):
        body = {"model": "rerank", "query": QUERY, "documents": PRODUCTS}
        results = requests.post(f"{api}/v2/rerank", json=body, timeout=120).json()["results"]
        return max(abs(r["relevance_score"] - expected[r["index"]]) for r in results)

    with ThreadPoolExecutor(8) as pool:
        assert max(pool.map(call, range(16))) < 1e-6


# Long products ---------------------------------------------------------------------------

LONG_PRODUCT = " ".join(f"word{i} headphones cable" for i in range(120))  # several windows of 128 tokens


@pytest.fixture(scope="module")
def windows(tiny_repository):
    return DocumentWindows.from_repository(tiny_repository, "tokenizer", TEST_MAX_LENGTH)


def test_chunks_score_a_long_product_by_its_best_window(api, grpc, windows):
    pieces = windows.split([LONG_PRODUCT], windows.room(QUERY), 32, 10)[0]
    assert len(pieces) > 2
    body = {"model": "rerank", "query": QUERY, "documents": [LONG_PRODUCT, PRODUCTS[0]], "long_documents": "chunks"}
    results = {r["index"]: r["relevance_score"] for r in requests.post(f"{api}/v2/rerank", json=body, timeout=60).json()["results"]}
    assert results[0] == pytest.approx(sigmoid(grpc.score(QUERY, pieces).max()), abs=1e-6)
    assert results[1] == pytest.approx(sigmoid(grpc.score(QUERY, [PRODUCTS[0]])[0]), abs=1e-6)
    truncated = requests.post(f"{api}/v2/rerank", json={**body, "long_documents": "truncate"}, timeout=60).json()["results"]
    assert {r["index"]: r["relevance_score"] for r in truncated}[0] == pytest.approx(sigmoid(grpc.score(QUERY, [LONG_PRODUCT])[0]), abs=1e-6)


def test_max_tokens_per_doc_and_left_truncation_cut_the_product(api, grpc, windows):
    body = {"model": "rerank", "query": QUERY, "documents": [LONG_PRODUCT], "max_tokens_per_doc": 10}
    score = requests.post(f"{api}/v2/rerank", json=body, timeout=60).json()["results"][0]["relevance_score"]
    assert score == pytest.approx(sigmoid(grpc.score(QUERY, windows.cut([LONG_PRODUCT], 10))[0]), abs=1e-6)
    body = {"query": QUERY, "texts": [LONG_PRODUCT], "truncation_direction": "Left", "raw_scores": True}
    score = requests.post(f"{api}/rerank", json=body, timeout=60).json()[0]["score"]
    end = windows.cut([LONG_PRODUCT], windows.room(QUERY), keep_end=True)
    assert end[0].endswith("word119 headphones cable")
    assert score == pytest.approx(float(grpc.score(QUERY, end)[0]), abs=1e-5)


def test_without_the_repository_long_product_options_say_what_they_need(triton_server):
    settings = GatewaySettings(triton_url=triton_server.grpc_url)
    with GatewayServer(settings, Listener(port=0)) as server:
        body = {"model": "rerank", "query": QUERY, "documents": [LONG_PRODUCT], "long_documents": "chunks"}
        response = requests.post(f"{server.url}/v2/rerank", json=body, timeout=60)
        assert response.status_code == 400
        assert response.json()["message"] == 'long_documents="chunks" needs the model\'s tokenizer: start the gateway with --repository'
        # at or above the window, max_tokens_per_doc needs nothing: the server truncates there
        body = {"model": "rerank", "query": QUERY, "documents": [LONG_PRODUCT], "max_tokens_per_doc": 4096}
        assert requests.post(f"{server.url}/v2/rerank", json=body, timeout=60).status_code == 200


def test_an_unreachable_triton_is_503_with_retry_after():
    from polyrank.server import free_port

    with GatewayServer(GatewaySettings(triton_url=f"127.0.0.1:{free_port()}", timeout_s=2), Listener(port=0)) as server:
        response = requests.post(f"{server.url}/v2/rerank", json={"model": "rerank", "query": QUERY, "documents": ["x"]}, timeout=30)
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert response.json()["error_type"] == "unavailable"
        assert requests.get(f"{server.url}/health", timeout=30).status_code == 503
