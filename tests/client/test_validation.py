"""Bad input is refused by the client before any network call: nothing listens on the port,
so a request that reached the network would fail with ServerUnavailableError instead."""

import re

import pytest

from polyrank.client import InvalidRequestError, RerankClient, ServerUnavailableError
from polyrank.server import free_port


@pytest.fixture
def offline_client():
    with RerankClient(f"127.0.0.1:{free_port()}", timeout_s=2, retry_deadline_s=0) as client:
        yield client


@pytest.mark.parametrize(
    "query, documents, message",
    [
        ("", ["a"], "query is empty"),
        ("   \t", ["a"], "query is empty"),
        (None, ["a"], "query must be a string"),
        (b"bytes", ["a"], "query must be a string"),
        ("shoes", [], "documents is empty"),
        ("shoes", "one string", "documents must be a list"),
        ("shoes", None, "documents must be a list"),
        ("shoes", ["ok", 3], r"documents\[1\] must be a string, got int"),
        ("shoes", ["ok", None], r"documents\[1\] must be a string, got NoneType"),
        ("shoes", ["ok", "  "], r"documents\[1\] is empty"),
        ("shoes", ["bad \ud800 surrogate"], r"documents\[0\] is not valid Unicode"),
        ("shoes", ["ok", "x" * 1_048_576], r"documents\[1\] is 1048576 bytes, more than the 65536 allowed"),
        ("shoes", ["nul \x00 inside"], r"documents\[0\] contains a NUL character"),
        ("nul\x00query", ["a"], "query contains a NUL character"),
        ("x" * 70_000, ["a"], "query is 70000 bytes, more than the 65536 allowed"),
    ],
)
def test_bad_input_raises_value_error_before_any_network_call(offline_client, query, documents, message):
    with pytest.raises(InvalidRequestError, match=message) as raised:
        offline_client.rerank(query, documents)
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("top_k", [0, -1, 2.5, True])
def test_bad_top_k_is_refused(offline_client, top_k):
    with pytest.raises(InvalidRequestError, match="top_k"):
        offline_client.rerank("shoes", ["a"], top_k=top_k)


def test_too_many_documents_is_refused():
    with RerankClient(f"127.0.0.1:{free_port()}", max_documents=3) as client:
        with pytest.raises(InvalidRequestError, match="4 items, more than max_documents=3"):
            client.rerank("shoes", ["a", "b", "c", "d"])


def test_valid_request_without_a_server_is_unavailable(offline_client):
    with pytest.raises(ServerUnavailableError):
        offline_client.rerank("shoes", ["running shoes"])


@pytest.mark.parametrize("lists, message", [
    ([], "lists must be a non-empty list of (query, documents) pairs"),
    ("shoes", "lists must be a non-empty list of (query, documents) pairs"),
    ([("shoes",)], "lists[0] must be a (query, documents) pair"),
    ([("shoes", ["ok"]), ("", ["ok"])], "lists[1]: query is empty or only whitespace"),
    ([("shoes", ["ok"]), ("boots", ["ok", 3])], "lists[1]: documents[1] must be a string, got int"),
])
def test_rerank_many_refuses_bad_lists_before_any_network_call(lists, message):
    with RerankClient("127.0.0.1:1", retry_deadline_s=0) as client:
        with pytest.raises(InvalidRequestError, match=re.escape(message)):
            client.rerank_many(lists)
