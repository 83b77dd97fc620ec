"""The README's bad-input table through HTTP: each row gets its status and one line naming the
field, in the shape of the route's API, and afterwards a normal request is still scored right."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from polyrank.client import RerankClient
from polyrank.gateway.app import GatewaySettings
from polyrank.gateway.server import GatewayServer, Listener

MAX_DOCUMENTS = 16
V2 = {"model": "rerank", "query": "shoes", "documents": ["running shoes"]}

CASES = {
    "empty query": ("/v2/rerank", {**V2, "query": ""}, 400, "query is empty or only whitespace"),
    "whitespace-only product": ("/v2/rerank", {**V2, "documents": [" \t\n"]}, 400, "documents[0] is empty or only whitespace"),
    "query not a string": ("/v2/rerank", {**V2, "query": 5}, 422, "query: Input should be a valid string"),
    "product not a string": ("/v2/rerank", {**V2, "documents": ["a", 3]}, 422, "documents[1]: Input should be a valid string"),
    "documents not a list": ("/v2/rerank", {**V2, "documents": "shoes"}, 422, "documents: Input should be a valid list"),
    "empty document list": ("/v2/rerank", {**V2, "documents": []}, 422, "documents: List should have at least 1 item after validation, not 0"),
    "more products than allowed": (
        "/v2/rerank", {**V2, "documents": ["a"] * (MAX_DOCUMENTS + 1)}, 400, f"17 documents in one call, more than the {MAX_DOCUMENTS} allowed"
    ),
    "a 1 MB product text": ("/v2/rerank", {**V2, "documents": ["x" * 1_048_576]}, 400, "documents[0] is 1048576 bytes, more than the 65536 allowed"),
    "lone surrogate": ("/v2/rerank", '{"model": "rerank", "query": "\\ud800", "documents": ["a"]}', 400, "query is not valid Unicode (surrogates not allowed at position 0)"),
    "invalid UTF-8 bytes": ("/v2/rerank", b'{"model": "rerank", "query": "caf\xff", "documents": ["a"]}', 400, "body: not valid UTF-8 JSON"),
    "NUL character": ("/v2/rerank", {**V2, "documents": ["run\x00ning"]}, 400, "documents[0] contains a NUL character"),
    "missing field": ("/v2/rerank", {"model": "rerank", "query": "shoes"}, 422, "documents: Field required"),
    "not JSON": ("/v2/rerank", "{", 422, "body: JSON decode error (Expecting property name enclosed in double quotes at position 1)"),
    "unknown route": ("/v3/rerank", V2, 404, "Not Found"),
    "unknown model": ("/v2/rerank", {**V2, "model": "no_such_model"}, 404, "model 'no_such_model' is not served here; served: rerank"),
    "top_n 0": ("/v2/rerank", {**V2, "top_n": 0}, 422, "top_n: Input should be greater than or equal to 1"),
    "top_n 2.5": ("/v2/rerank", {**V2, "top_n": 2.5}, 422, "top_n: Input should be a valid integer"),
    "top_n true": ("/v2/rerank", {**V2, "top_n": True}, 422, "top_n: Input should be a valid integer"),
    "unknown long_documents": ("/v2/rerank", {**V2, "long_documents": "all"}, 422, "long_documents: Input should be 'truncate' or 'chunks'"),
    "v1 document without text": ("/v1/rerank", {"query": "shoes", "documents": [{"title": "x"}]}, 400, 'documents[0] needs a "text" string (or name its fields in rank_fields)'),
    "TEI: empty texts": ("/rerank", {"query": "shoes", "texts": []}, 422, "texts: List should have at least 1 item after validation, not 0"),
    "TEI: NUL character": ("/rerank", {"query": "shoes", "texts": ["a\x00"]}, 400, "texts[0] contains a NUL character"),
    "TEI: bad truncation_direction": ("/rerank", {"query": "shoes", "texts": ["a"], "truncation_direction": "Up"}, 422, "truncation_direction: Input should be"),
    "batch: empty product in the second list": (
        "/v1/rerank/batch", {"requests": [{"query": "a", "documents": ["b"]}, {"query": "a", "documents": [""]}]}, 400,
        "requests[1].documents[0] is empty or only whitespace",
    ),
}


@pytest.fixture(scope="module")
def api(triton_server, tiny_repository):
    settings = GatewaySettings(triton_url=triton_server.grpc_url, repository=tiny_repository, max_documents=MAX_DOCUMENTS)
    with GatewayServer(settings, Listener(port=0)) as server:
        yield server.url


@pytest.mark.parametrize("kind", CASES)
def test_bad_input_gets_its_status_and_one_line_naming_the_field(kind, api, triton_server):
    route, body, status, message = CASES[kind]
    if isinstance(body, (str, bytes)):
        response = requests.post(f"{api}{route}", data=body, headers={"content-type": "application/json"}, timeout=60)
    else:
        response = requests.post(f"{api}{route}", json=body, timeout=60)
    assert response.status_code == status, response.text
    answer = response.json()
    text = answer["error" if route == "/rerank" else "message"]  # TEI's error shape on its route
    assert text.startswith(message), text
    assert "\n" not in text and answer["error_type"]
    with RerankClient(triton_server.grpc_url) as client:  # still serving, still right
        expected = 1 / (1 + np.exp(-client.score("shoes", ["running shoes"])[0]))
    served = requests.post(f"{api}/v2/rerank", json=V2, timeout=60).json()["results"][0]["relevance_score"]
    assert served == pytest.approx(float(expected), abs=1e-6)
