"""Bad input sent around the client, as raw gRPC calls to the real server: each kind gets
INVALID_ARGUMENT (or NOT_FOUND for a model that does not exist) with a message naming what
is wrong, and afterwards a normal rerank still returns correct scores. Unusual but valid
text (emoji, right-to-left, combining marks, mixed scripts) is scored like PyTorch scores it.
The README's bad-input table lists the same rows; the client's own checks are in
tests/client/test_validation.py."""

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from polyrank.client import RerankClient
from polyrank.checkpoint import torch_scores
from polyrank.model_repository.pair_encoding import PairEncoder
from tests.conftest import TEST_MAX_BATCH_SIZE, TEST_MAX_LENGTH


def texts(name, values, dtype="BYTES", shape=None, numpy_type=object):
    array = np.array(values, dtype=numpy_type)
    array = array.reshape(shape or (len(values), 1))
    tensor = grpcclient.InferInput(name, list(array.shape), dtype)
    tensor.set_data_from_numpy(array)
    return tensor


def pairs(query: bytes, documents: list[bytes]):
    return [texts("QUERY", [query] * len(documents)), texts("DOCUMENTS", documents)]


INVALID_ARGUMENT = "StatusCode.INVALID_ARGUMENT"
CASES = {
    "empty query": (pairs(b"", [b"shoes"]), INVALID_ARGUMENT, "QUERY[0] is empty or only whitespace"),
    "whitespace-only product": (pairs(b"shoes", [b" \t\n"]), INVALID_ARGUMENT, "DOCUMENTS[0] is empty or only whitespace"),
    "empty document list": (pairs(b"shoes", []), INVALID_ARGUMENT, "for inference input 'DOCUMENTS' for model 'rerank', got 0"),
    "invalid UTF-8": (pairs(b"shoes", [b"caf\xff"]), INVALID_ARGUMENT, "DOCUMENTS[0] is not valid UTF-8"),
    "truncated UTF-8 sequence": (pairs(b"\xe6\x97", [b"shoes"]), INVALID_ARGUMENT, "QUERY[0] is not valid UTF-8"),
    "NUL byte": (pairs(b"shoes", [b"run\x00ning"]), INVALID_ARGUMENT, "DOCUMENTS[0] contains a NUL character"),
    "1 MB product text": (
        pairs(b"shoes", [b"x" * 1_048_576]), INVALID_ARGUMENT, "DOCUMENTS[0] is 1048576 bytes, more than the 65536 allowed"
    ),
    "more pairs than max_batch_size": (
        pairs(b"shoes", [b"a"] * (TEST_MAX_BATCH_SIZE + 1)), INVALID_ARGUMENT, f"batch-size must be <= {TEST_MAX_BATCH_SIZE}"
    ),
    "QUERY and DOCUMENTS row counts differ": (
        [texts("QUERY", [b"shoes"]), texts("DOCUMENTS", [b"a", b"b"])], INVALID_ARGUMENT,
        "input 'QUERY' batch size does not match other inputs",
    ),
    "missing input": ([texts("QUERY", [b"shoes"])], INVALID_ARGUMENT, "missing required input(s) ['DOCUMENTS']"),
    "unknown input name": (
        [texts("QUERY", [b"shoes"]), texts("PRODUCTS", [b"a"])], INVALID_ARGUMENT,
        "unexpected inference input 'PRODUCTS'",
    ),
    "wrong dtype": (
        [texts("QUERY", [b"shoes"]), texts("DOCUMENTS", [1.0], dtype="FP32", numpy_type=np.float32)], INVALID_ARGUMENT,
        "'DOCUMENTS' data-type is 'FP32', but model 'rerank' expects 'BYTES'",
    ),
    "wrong shape": (
        [texts("QUERY", [b"shoes", b"shoes"], shape=(1, 2)), texts("DOCUMENTS", [b"a", b"b"], shape=(1, 2))],
        INVALID_ARGUMENT, "unexpected shape",
    ),
}


@pytest.fixture(scope="module")
def raw(triton_server):
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def reference(tiny_checkpoint):
    encoder = PairEncoder(tiny_checkpoint.tokenizer, TEST_MAX_LENGTH, tiny_checkpoint.pad_id)
    return lambda query, documents: torch_scores(tiny_checkpoint, encoder, [query] * len(documents), documents)


def assert_still_serving(triton_server, reference):
    documents = ["running shoes", "coffee grinder"]
    with RerankClient(triton_server.grpc_url, retry_deadline_s=0) as client:
        assert np.abs(client.score("shoes", documents) - reference("shoes", documents)).max() < 1e-4


@pytest.mark.parametrize("kind", sorted(CASES))
def test_bad_input_gets_a_specific_error_and_the_server_keeps_serving(kind, raw, triton_server, reference):
    inputs, status, message = CASES[kind]
    with pytest.raises(InferenceServerException) as raised:
        raw.infer("rerank", inputs)
    assert raised.value.status() == status, raised.value.message()
    assert message in raised.value.message()
    assert_still_serving(triton_server, reference)


def test_unknown_model_is_not_found(raw, triton_server, reference):
    with pytest.raises(InferenceServerException) as raised:
        raw.infer("no_such_model", pairs(b"shoes", [b"a"]))
    assert raised.value.status() == "StatusCode.NOT_FOUND"
    assert "no_such_model" in raised.value.message()
    assert_still_serving(triton_server, reference)


UNUSUAL_TEXT = {
    "emoji": "Party pack 🎉🥳 balloons 🎈 ×50",
    "right-to-left": "ساعة ذكية مقاومة للماء",
    "combining marks": "Cafe\u0301 au lait, cre\u0300me bru\u0302le\u0301e",
    "mixed scripts": "iPhone 15 ケース 透明 чехол Hülle غطاء",
    "zero-width and bidi controls": "shoe\u200b\u200d\u202e size 42",
}


@pytest.mark.parametrize("kind", sorted(UNUSUAL_TEXT))
def test_unusual_but_valid_text_is_scored_like_pytorch(kind, triton_server, reference):
    documents = [UNUSUAL_TEXT[kind], "running shoes"]
    with RerankClient(triton_server.grpc_url, retry_deadline_s=0) as client:
        assert np.abs(client.score(UNUSUAL_TEXT[kind], documents) - reference(UNUSUAL_TEXT[kind], documents)).max() < 1e-4
